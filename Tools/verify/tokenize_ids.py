#!/usr/bin/env python3
"""Reference token ids from Hugging Face `tokenizers`, for Kiln's tokenizer tests.

  tokenize_ids.py TOKENIZER_JSON TEXT_FILE OUT.bin [TEXT_FILE OUT.bin ...]
      For each text file (read whole, UTF-8, newlines untouched):
      Tokenizer.from_file(TOKENIZER_JSON).encode(text, add_special_tokens=False).ids
      written to OUT.bin as little-endian int32 (protocol kiln-ppl-v1 tokenizes this way).

  tokenize_ids.py --cases CASES.json TOKENIZER_JSON OUT.json [TOKENIZER_JSON OUT.json ...]
      CASES.json is a JSON list of strings. Each OUT.json gets
      {"vocab_size": get_vocab_size(True),
       "cases": [{"ids": encode(s, add_special_tokens=False).ids,
                  "special_ids": encode(s, add_special_tokens=True).ids,
                  "decoded": decode(ids), "decoded_all": decode(ids, skip_special_tokens=False)}]}
      or {"error": MESSAGE} if the tokenizer does not load.

Truncation and padding stored in the tokenizer.json are switched off (Kiln ignores them).
Exit 0 on success; a message on stderr and exit 1 otherwise.
"""
import array
import json
import sys

from tokenizers import Tokenizer


def load(path):
    tokenizer = Tokenizer.from_file(path)
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def write_ids(ids, out_path):
    values = array.array("i", ids)
    if values.itemsize != 4:
        raise SystemExit("int32 array items are not 4 bytes on this platform")
    if sys.byteorder != "little":
        values.byteswap()
    with open(out_path, "wb") as f:
        f.write(values.tobytes())


def run_cases(tokenizer_path, cases):
    try:
        tokenizer = load(tokenizer_path)
    except Exception as error:  # the reference refuses the file: report, do not fail
        return {"error": str(error)}
    results = []
    for text in cases:
        ids = tokenizer.encode(text, add_special_tokens=False).ids
        results.append({
            "ids": ids,
            "special_ids": tokenizer.encode(text, add_special_tokens=True).ids,
            "decoded": tokenizer.decode(ids),
            "decoded_all": tokenizer.decode(ids, skip_special_tokens=False),
        })
    return {"vocab_size": tokenizer.get_vocab_size(True), "cases": results}


def main(argv):
    if len(argv) >= 4 and len(argv) % 2 == 0 and argv[0] == "--cases":
        with open(argv[1], encoding="utf-8") as f:
            cases = json.load(f)
        for tokenizer_path, out_path in zip(argv[2::2], argv[3::2]):
            with open(out_path, "w", encoding="utf-8") as f:
                json.dump(run_cases(tokenizer_path, cases), f, ensure_ascii=False)
        return 0
    if len(argv) < 3 or len(argv) % 2 != 1:
        sys.stderr.write(__doc__)
        return 1
    tokenizer = load(argv[0])
    for text_path, out_path in zip(argv[1::2], argv[2::2]):
        with open(text_path, "rb") as f:
            text = f.read().decode("utf-8")
        write_ids(tokenizer.encode(text, add_special_tokens=False).ids, out_path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
