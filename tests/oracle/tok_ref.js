// Reference token ids from HuggingFace tokenizers (its Rust core, npm @anush008/tokenizers).
//   node tok_ref.js TOKENIZER_JSON INPUT [--special]
//     INPUT: one base64-encoded text per line; prints the ids of each as one line of
//     space-separated integers. Bytes are decoded as UTF-8 the way node does
//     (each maximal invalid subsequence -> U+FFFD).
//   node tok_ref.js TOKENIZER_JSON FILE --bench
//     encodes the whole FILE in one call and prints "tokens seconds" of the fastest of 3.
const fs = require('fs');
const path = require('path');
const root = process.env.SUSHI_REPO_ROOT || path.join(__dirname, '..', '..');
const { Tokenizer } = require(path.join(root, 'build/npm/node_modules/@anush008/tokenizers'));

async function main() {
  const [tokPath, input, flag] = process.argv.slice(2);
  const tok = Tokenizer.fromFile(tokPath);
  if (flag === '--bench') {
    const text = fs.readFileSync(input, 'utf8');
    let best = Infinity, n = 0;
    for (let r = 0; r < 3; r++) {
      const t0 = process.hrtime.bigint();
      const enc = await tok.encode(text, null, { addSpecialTokens: false });
      n = enc.getIds().length;
      best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1e9);
    }
    console.log(`${n} ${best}`);
    return;
  }
  const special = flag === '--special';
  const lines = fs.readFileSync(input, 'utf8').split('\n').filter((l, i, a) => i < a.length - 1 || l.length);
  const out = [];
  for (const l of lines) {
    const text = Buffer.from(l, 'base64').toString('utf8');
    const enc = await tok.encode(text, null, { addSpecialTokens: special });
    out.push(enc.getIds().join(' '));
  }
  process.stdout.write(out.join('\n') + (out.length ? '\n' : ''));
}
main().catch((e) => { console.error(e); process.exit(1); });
