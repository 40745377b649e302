#!/usr/bin/env python3
"""Build the CLIP BPE tokenizer (vocab.json + merges.txt) from open_clip's
`bpe_simple_vocab_16e6.txt.gz` and save it as `CLIPTokenizer.save_pretrained` does.

The vocabulary is built exactly like OpenAI CLIP / open_clip's SimpleTokenizer:
  256 byte-unicode chars, the same 256 with '</w>', the first 49152-256-2 merges
  (joined), then <|startoftext|> and <|endoftext|>  -> 49408 entries.

The ids produced by transformers.CLIPTokenizer from the saved files are then
checked against a re-implementation of open_clip's SimpleTokenizer (read from the
wheel's open_clip/tokenizer.py; open_clip itself is NOT installed because it would
pull a different torch).

Usage:
  python tools/embedded/make_clip_tokenizer.py \
      --wheel /work/dl/open_clip_torch-3.3.0-py3-none-any.whl --out models/shapes-sd/tokenizer
"""
import argparse
import gzip
import html
import io
import json
import os
import zipfile
from functools import lru_cache

import regex as re

BPE_MEMBER = "open_clip/bpe_simple_vocab_16e6.txt.gz"


@lru_cache()
def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(2 ** 8):
        if b not in bs:
            bs.append(b)
            cs.append(2 ** 8 + n)
            n += 1
    cs = [chr(n) for n in cs]
    return dict(zip(bs, cs))


def load_merges(bpe_gz_bytes):
    lines = gzip.GzipFile(fileobj=io.BytesIO(bpe_gz_bytes)).read().decode("utf-8").split("\n")
    # line 0 is the "#version" header; CLIP uses merges[1:49152-256-2+1]
    return [tuple(m.split()) for m in lines[1:49152 - 256 - 2 + 1]]


def build_vocab(merges):
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    for m in merges:
        vocab.append("".join(m))
    vocab.extend(["<|startoftext|>", "<|endoftext|>"])
    return vocab


class RefSimpleTokenizer:
    """Re-implementation of open_clip.tokenizer.SimpleTokenizer (clean='lower', context 77)."""

    def __init__(self, merges):
        self.byte_encoder = bytes_to_unicode()
        vocab = build_vocab(merges)
        self.encoder = dict(zip(vocab, range(len(vocab))))
        self.bpe_ranks = dict(zip(merges, range(len(merges))))
        self.cache = {"<|startoftext|>": "<|startoftext|>", "<|endoftext|>": "<|endoftext|>"}
        self.pat = re.compile(r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
                              re.IGNORECASE)
        self.sot = self.encoder["<|startoftext|>"]
        self.eot = self.encoder["<|endoftext|>"]

    @staticmethod
    def _pairs(word):
        return set(zip(word[:-1], word[1:]))

    def bpe(self, token):
        if token in self.cache:
            return self.cache[token]
        word = tuple(token[:-1]) + (token[-1] + "</w>",)
        pairs = self._pairs(word)
        if not pairs:
            return token + "</w>"
        while True:
            bigram = min(pairs, key=lambda p: self.bpe_ranks.get(p, float("inf")))
            if bigram not in self.bpe_ranks:
                break
            first, second = bigram
            new_word, i = [], 0
            while i < len(word):
                try:
                    j = word.index(first, i)
                    new_word.extend(word[i:j])
                    i = j
                except ValueError:
                    new_word.extend(word[i:])
                    break
                if word[i] == first and i < len(word) - 1 and word[i + 1] == second:
                    new_word.append(first + second)
                    i += 2
                else:
                    new_word.append(word[i])
                    i += 1
            word = tuple(new_word)
            if len(word) == 1:
                break
            pairs = self._pairs(word)
        out = " ".join(word)
        self.cache[token] = out
        return out

    def clean(self, text):
        try:
            import ftfy
            text = ftfy.fix_text(text)
        except ImportError:
            pass
        text = html.unescape(html.unescape(text)).strip()
        return " ".join(text.split()).strip().lower()

    def encode(self, text):
        ids = []
        for tok in re.findall(self.pat, self.clean(text)):
            tok = "".join(self.byte_encoder[b] for b in tok.encode("utf-8"))
            ids.extend(self.encoder[t] for t in self.bpe(tok).split(" "))
        return ids

    def __call__(self, text, context_length=77):
        toks = [self.sot] + self.encode(text) + [self.eot]
        if len(toks) > context_length:
            toks = toks[:context_length]
            toks[-1] = self.eot
        return toks + [0] * (context_length - len(toks))  # open_clip pads with 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--wheel", default="/work/dl/open_clip_torch-3.3.0-py3-none-any.whl")
    ap.add_argument("--out", default="models/shapes-sd/tokenizer")
    args = ap.parse_args()

    with zipfile.ZipFile(args.wheel) as z:
        bpe_bytes = z.read(BPE_MEMBER)
    merges = load_merges(bpe_bytes)
    vocab = build_vocab(merges)
    assert len(vocab) == 49408, len(vocab)
    assert len(set(vocab)) == len(vocab)

    def write_classic(d):
        # the classic slow-tokenizer files (what transformers 4.x CLIPTokenizer.save_pretrained writes)
        with open(os.path.join(d, "vocab.json"), "w", encoding="utf-8") as f:
            json.dump({t: i for i, t in enumerate(vocab)}, f, ensure_ascii=False)
        with open(os.path.join(d, "merges.txt"), "w", encoding="utf-8") as f:
            f.write("#version: 0.2\n")
            for a, b in merges:
                f.write(f"{a} {b}\n")

    import shutil
    import tempfile
    from transformers import CLIPTokenizer
    tmp = tempfile.mkdtemp()
    write_classic(tmp)
    tok = CLIPTokenizer(os.path.join(tmp, "vocab.json"), os.path.join(tmp, "merges.txt"),
                        model_max_length=77, pad_token="<|endoftext|>")
    os.makedirs(args.out, exist_ok=True)
    tok.save_pretrained(args.out)  # transformers 5: tokenizer.json + tokenizer_config.json
    write_classic(args.out)        # + vocab.json / merges.txt for loaders that want the BPE files
    with open(os.path.join(args.out, "special_tokens_map.json"), "w") as f:
        json.dump({"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
                   "pad_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}, f, indent=2)
    # a copy with ONLY vocab.json + merges.txt + tokenizer_config.json, to check that path too
    shutil.copy(os.path.join(args.out, "tokenizer_config.json"), tmp)

    # --- verify ---
    tok_classic = CLIPTokenizer.from_pretrained(tmp)
    tok = CLIPTokenizer.from_pretrained(args.out)
    ref = RefSimpleTokenizer(merges)
    assert len(tok) == 49408, len(tok)
    assert tok.bos_token_id == 49406 and tok.eos_token_id == 49407 and tok.pad_token_id == 49407
    prompts = [
        "a large red circle in the center, blue background",
        "Three small white stars on the bottom, black background",
        "a red circle on the left and a blue square on the right, green background",
        "A photo of an astronaut riding a horse on Mars!!  (4k, HDR)",
        "a small purple heart at the top, yellow background",
        "outlined orange triangles; it's 2024 & they're striped... 12345 café",
    ]
    for p in prompts:
        hf = tok(p, padding="max_length", max_length=77, truncation=True).input_ids
        assert hf == tok_classic(p, padding="max_length", max_length=77, truncation=True).input_ids
        oc = ref(p)
        n = oc.index(ref.eot) + 1
        assert hf[:n] == oc[:n], (p, hf[:n], oc[:n])
        assert all(i == 49407 for i in hf[n:]), "HF pads with <|endoftext|>"
        print(f"OK {n:3d} tokens  {p!r}: {hf[:n]}")
    shutil.rmtree(tmp)
    print("vocab", len(tok), "->", args.out)


if __name__ == "__main__":
    main()
