#!/usr/bin/env python3
"""Rewrites a CUDA source (kernels/cuda/*.cu or *.h) as C++ for the CPU emulator
(tests/emu/cuda_emu.h). Three constructs change; everything else is kept byte for byte, and
every rewrite keeps the line count, so compiler messages point at the original lines (a
`#line` directive names the original file):

  kernel<T><<<grid, block[, smem[, stream]]>>>(args)
      -> sushi_emu::cfg(grid, block[, smem[, stream]]).run("kernel<T>", kernel<T>, args)
      (over several lines, inside macro arguments such as CUDA_ACT(T, ...), any kernel
      expression: a name, a template-id, a function pointer variable)
  extern __shared__ [__align__(n)] TYPE name[];
      -> in a function: TYPE *name = (TYPE *)sushi_emu::dynamic_shared();
         at file scope: #define name ((TYPE *)sushi_emu::dynamic_shared())
  asm [volatile] ("text" : outputs : inputs [: clobbers]);
      -> sushi_emu::ptx("text", {sushi_emu::out(x), ..., sushi_emu::in(y), ...});

usage: transform.py SRC OUT
"""
import re
import sys

IDENT = re.compile(r"[A-Za-z_0-9:]")


def fail(path, text, pos, why):
    line = text.count("\n", 0, pos) + 1
    sys.exit(f"transform.py: {path}:{line}: {why}")


def skip_literal(text, i):
    """index after the string or char literal starting at text[i]"""
    q = text[i]
    i += 1
    while i < len(text) and text[i] != q:
        i += 2 if text[i] == "\\" else 1
    return i + 1


def match_close(text, i, path):
    """index after the bracket closing the one at text[i] ((, [, {), skipping literals"""
    pairs = {"(": ")", "[": "]", "{": "}"}
    stack = [pairs[text[i]]]
    i += 1
    while i < len(text):
        c = text[i]
        if c in "\"'":
            i = skip_literal(text, i)
            continue
        if c in pairs:
            stack.append(pairs[c])
        elif c in ")]}":
            if c != stack.pop():
                fail(path, text, i, f"unbalanced '{c}'")
            if not stack:
                return i + 1
        i += 1
    fail(path, text, i, "unclosed bracket")


def split_top(s):
    """s split at commas outside brackets and literals"""
    parts, depth, cur, i = [], 0, "", 0
    while i < len(s):
        c = s[i]
        if c in "\"'":
            j = skip_literal(s, i)
            cur += s[i:j]
            i = j
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        if c == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += c
        i += 1
    if cur.strip():
        parts.append(cur)
    return parts


def same_lines(orig, new):
    """new padded with newlines to span as many lines as orig"""
    return new + "\n" * max(0, orig.count("\n") - new.count("\n"))


def kernel_start(text, end, path):
    """start of the kernel expression that ends just before text[end] (the <<<)"""
    i = end
    while i > 0 and text[i - 1].isspace():
        i -= 1
    if text[i - 1] == ">":   # template arguments: back to the matching '<'
        depth = 0
        while i > 0:
            i -= 1
            if text[i] == ">":
                depth += 1
            elif text[i] == "<":
                depth -= 1
                if depth == 0:
                    break
    while i > 0 and IDENT.match(text[i - 1]):
        i -= 1
    if i == end:
        fail(path, text, end, "no kernel name before <<<")
    return i


def rewrite_launches(text, path):
    out, pos = [], 0
    while True:
        at = text.find("<<<", pos)
        if at < 0:
            break
        start = kernel_start(text, at, path)
        close = text.find(">>>", at)
        if close < 0:
            fail(path, text, at, "<<< without >>>")
        cfg = text[at + 3:close]
        j = close + 3
        while text[j].isspace():
            j += 1
        if text[j] != "(":
            fail(path, text, j, "launch without an argument list")
        args_end = match_close(text, j, path)
        args = text[j + 1:args_end - 1]
        kernel = text[start:at].rstrip()
        name = " ".join(kernel.split()).replace('"', "")
        call = f'sushi_emu::cfg({cfg}).run("{name}", {kernel}' + (f", {args})" if args.strip() else ")")
        out.append(text[pos:start])
        out.append(same_lines(text[start:args_end], call))
        pos = args_end
    out.append(text[pos:])
    return "".join(out)


EXTERN_SHARED = re.compile(
    r"^([ \t]*)extern[ \t]+__shared__[ \t]+(?:__align__\(\s*\d+\s*\)[ \t]+)?([A-Za-z_][\w \t]*?)[ \t]+(\w+)\s*\[\s*\]\s*;",
    re.M)


def rewrite_extern_shared(text):
    def repl(m):
        indent, typ, name = m.group(1), m.group(2).strip(), m.group(3)
        if indent:
            return f"{indent}{typ} *{name} = ({typ} *)sushi_emu::dynamic_shared();"
        return f"#define {name} (({typ} *)sushi_emu::dynamic_shared())"
    return EXTERN_SHARED.sub(repl, text)


ASM = re.compile(r"\basm\b(\s+volatile\b|\s+__volatile__\b)?\s*\(")
OPERAND = re.compile(r'^\s*"([=+&]*)([a-zA-Z]+)"\s*\((.*)\)\s*$', re.S)


def rewrite_asm(text, path):
    out, pos = [], 0
    for m in ASM.finditer(text):
        if m.start() < pos:
            continue
        open_at = m.end() - 1
        end = match_close(text, open_at, path)
        body = text[open_at + 1:end - 1]
        sections = [""]   # template, outputs, inputs, clobbers: split at ':' outside literals/brackets
        depth, i = 0, 0
        while i < len(body):
            c = body[i]
            if c in "\"'":
                j = skip_literal(body, i)
                sections[-1] += body[i:j]
                i = j
                continue
            depth += c in "([{"
            depth -= c in ")]}"
            if c == ":" and depth == 0:
                if body[i:i + 2] == "::":   # empty outputs written as '::'
                    sections += ["", ""]
                    i += 2
                    continue
                sections.append("")
            else:
                sections[-1] += c
            i += 1
        templ = sections[0].strip()
        if not templ.startswith('"'):
            fail(path, text, m.start(), "asm without a string template")
        ops = []
        for kind, sec in (("out", 1), ("in", 2)):
            if sec >= len(sections):
                continue
            for op in split_top(sections[sec]):
                om = OPERAND.match(op)
                if not om:
                    fail(path, text, m.start(), f"asm operand not understood: {op.strip()}")
                is_out = "=" in om.group(1) or "+" in om.group(1)
                if (kind == "out") != is_out:
                    fail(path, text, m.start(), f"asm operand in the wrong section: {op.strip()}")
                ops.append(f"sushi_emu::{kind}({om.group(3).strip()})")
        call = f"sushi_emu::ptx({templ}, {{{', '.join(ops)}}})"
        out.append(text[pos:m.start()])
        out.append(same_lines(text[m.start():end], call))
        pos = end
    out.append(text[pos:])
    return "".join(out)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: transform.py SRC OUT")
    src, dst = sys.argv[1], sys.argv[2]
    with open(src, encoding="utf-8") as f:
        text = f.read()
    text = rewrite_asm(text, src)
    text = rewrite_extern_shared(text)
    text = rewrite_launches(text, src)
    with open(dst, "w", encoding="utf-8") as f:
        f.write(f'#line 1 "{src}"\n' + text)


if __name__ == "__main__":
    main()
