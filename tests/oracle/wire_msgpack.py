#!/usr/bin/python3
"""Reference for the wire header, using the msgpack Python package (independent of msgpack-c
and of sushi's own reader).

  wire_msgpack.py decode FILE   print the msgpack value in FILE as JSON (sorted keys)
  wire_msgpack.py encode JSON   write the msgpack encoding of the JSON value to stdout
"""
import json
import sys

import msgpack


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("decode", "encode"):
        sys.exit(__doc__)
    if sys.argv[1] == "decode":
        with open(sys.argv[2], "rb") as f:
            data = f.read()
        obj = msgpack.unpackb(data, raw=False, strict_map_key=True)
        print(json.dumps(obj, sort_keys=True))
    else:
        sys.stdout.buffer.write(msgpack.packb(json.loads(sys.argv[2]), use_bin_type=True))


if __name__ == "__main__":
    main()
