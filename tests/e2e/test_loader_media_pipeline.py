"""sushi-loader in pipeline mode with a multimodal manifest: a fake trainer (pyzmq
DEALER, direct mode, credit 2, window 4) receives batches 0..7 in order, and each
batch's tensors, media included (image/audio_mel/video/mesh_points and their *_row),
equal `sushi-loader --dump` for the same id, names, dtypes, shapes and bytes; batches
without a modality carry no tensor for it. Fixtures and config: test_loader_media.py."""
import os
import shutil
import sys

import numpy as np
import zmq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_loader_media as lm  # noqa: E402
from test_loader_pipeline import Loader, Peer, pump  # noqa: E402

TEXT = ["tokens", "targets", "doc_ids", "positions", "sample_ids", "answer_mask"]
MEDIA = [("image", "image_row"), ("audio_mel", "audio_row"), ("video", "video_row"), ("mesh_points", "mesh_row")]


def main():
    d, cfg, good, broken, video = lm.setup()
    ctx = zmq.Context()
    loader = trainer = None
    try:
        n = 8
        ref, _ = lm.dump(cfg, os.path.join(d, "dump"), n, 2)
        loader = Loader(ctx, d, cfg)
        loader.start()
        trainer = Peer(ctx, loader.endpoint, "trainer", "trainer", next=0, window=4, direct=1, credit=2)
        trainer.hello()

        def on_batch(p, hdr):   # applied at once: the window moves, credit comes back
            p.next = hdr["id"] + 1
            return 1

        pump(loader, [trainer], 20, until=lambda: len(trainer.ids()) >= n, on_batch=on_batch)
        lm.check(trainer.ids()[:n] == list(range(n)), "ids %s" % trainer.ids())
        kinds = set()
        for hdr, tensors in trainer.batches[:n]:
            i = hdr["id"]
            want, meta = ref[i]
            names = [t["name"] for t in hdr["tensors"]]
            media = [x for pair in MEDIA if pair[0] in want for x in pair]
            lm.check(names == TEXT + media, "batch %d: tensors %s, expected %s" % (i, names, TEXT + media))
            for name, w in want.items():
                g = tensors[name]
                lm.check(g.dtype == w.dtype and g.shape == w.shape, "batch %d %s: %s%s, dump %s%s" % (
                    i, name, g.dtype, g.shape, w.dtype, w.shape))
                lm.check(np.array_equal(g, w), "batch %d %s differs from --dump" % (i, name))
            kinds |= {m for m, _ in MEDIA if m in want}
        want_kinds = {"image", "audio_mel", "mesh_points"} | ({"video"} if video else set())
        lm.check(kinds == want_kinds, "media tensors seen %s, expected %s" % (kinds, want_kinds))
        lm.check(loader.stop() == 0, "SIGTERM: exit code")
        print("ok: %d batches in direct mode equal --dump, media tensors %s" % (n, sorted(kinds)))
    finally:
        if loader:
            loader.stop()
            loader.sub.close(0)
        if trainer:
            trainer.close()
        ctx.term()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
