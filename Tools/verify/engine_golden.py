#!/usr/bin/env python3
"""Golden inputs for the engine tests, dumped as raw little-endian arrays Swift reads directly.

  engine_golden.py npz NPZ OUT_DIR                      every array of NPZ as OUT_DIR/NAME.bin (float32 or int64)
  engine_golden.py tokenize TOKENIZER_JSON TEXT MAX OUT  ids of TEXT (whole file, no special tokens, first MAX;
                                                         MAX 0 = all) as int64 to OUT, with `tokenizers`

Prints one JSON line: {"NAME": {"dtype": "float32", "shape": [..]}, ...} or {"count": N}.
Exit 1 with a JSON {"error": ...} line when a needed module is missing.
"""
import json
import os
import sys


def need(module):
    try:
        return __import__(module)
    except ImportError:
        print(json.dumps({"error": f"python module {module} is not installed"}))
        sys.exit(1)


def dump_npz(path, out_dir):
    np = need("numpy")
    os.makedirs(out_dir, exist_ok=True)
    info = {}
    with np.load(path) as z:
        for name in z.files:
            a = z[name]
            a = a.astype("<f4") if a.dtype.kind == "f" else a.astype("<i8")
            a.tofile(os.path.join(out_dir, name + ".bin"))
            info[name] = {"dtype": str(a.dtype.name), "shape": list(a.shape)}
    print(json.dumps(info))


def tokenize(tokenizer_json, text_path, max_tokens, out):
    np = need("numpy")
    tokenizers = need("tokenizers")
    tok = tokenizers.Tokenizer.from_file(tokenizer_json)
    with open(text_path, encoding="utf-8") as f:
        text = f.read()
    ids = tok.encode(text, add_special_tokens=False).ids
    if max_tokens > 0:
        ids = ids[:max_tokens]
    np.asarray(ids, dtype="<i8").tofile(out)
    print(json.dumps({"count": len(ids)}))


def main():
    if len(sys.argv) >= 4 and sys.argv[1] == "npz":
        dump_npz(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 6 and sys.argv[1] == "tokenize":
        tokenize(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
