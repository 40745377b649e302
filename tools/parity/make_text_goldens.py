#!/usr/bin/env python3
"""Generate the CLIP tokenizer and text-encoder parity goldens -> Tests/Fixtures/text/.

Writes
  tokenizer_cases.json       ~70 prompts through transformers' CLIPTokenizer on models/shapes-sd/tokenizer:
                             `tokens` = tokenizer(text, add_special_tokens=False).input_ids,
                             `ids`    = tokenizer(text, padding="max_length", max_length=77, truncation=True).input_ids,
                             and the same two lists (`tokens_pad_bang`, `ids_pad_bang`) for the SD 2.x / SDXL-style
                             tokenizer config in tokenizer_pad_bang/ (pad token "!", special tokens as AddedToken dicts).
  tokenizer_pad_bang/        tokenizer_config.json + special_tokens_map.json of that second tokenizer (the tests
                             combine them with the vocabulary and merges of models/shapes-sd/tokenizer).
  unicode_classes.json       how the tokenizer classifies every code point assigned in Python's Unicode version:
                             ranges of letters (\\p{L}), numbers (\\p{N}), whitespace (normalised to " "), assigned
                             code points, and every per-character lowercase mapping, all measured on the
                             `tokenizers` normalizer / pre-tokenizer itself.
  clip_text_*.safetensors    tiny random CLIPTextModel / CLIPTextModelWithProjection in the format of
                             tools/parity/README.md: input.ids (float32 [B, 77]), param.<state_dict key>,
                             output.last_hidden_state, output.hidden_states.<i> (index into the model's
                             `hidden_states` tuple: 0 = embeddings, i = after encoder layer i), output.clip_skip.<n>
                             (`final_layer_norm(hidden_states[-(n + 1)])`, what diffusers' SD pipeline does for
                             clip_skip = n), output.pooler_output, output.text_embeds; metadata `config` = the
                             model's config.json.

transformers 5.x has no "slow" Python CLIPTokenizer any more: `CLIPTokenizer` is the `tokenizers`-backed one
(NFC, whitespace runs -> " ", lower-case, the CLIP split regex, byte-level BPE with "</w>"). The script also
loads it from vocab.json + merges.txt alone (no tokenizer.json) and checks that both agree on every prompt.
(Checked once by hand: transformers 4.57's CLIPTokenizerFast gives the same ids on all prompts and both configs;
4.57's slow CLIPTokenizer without ftfy differs on 8 of them -- CJK, ZWJ emoji, control characters, unusual
whitespace, "ΣΑΣ" and an upper-case "<|ENDOFTEXT|>" -- because its BasicTokenizer cleans text differently.)

Usage:  /work/venv/bin/python tools/parity/make_text_goldens.py [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import unicodedata

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import golden_io as gio  # noqa: E402

import transformers  # noqa: E402
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEFAULT_OUT = os.path.join(REPO, "Tests", "Fixtures", "text")
TOKENIZER_DIR = os.path.join(REPO, "models", "shapes-sd", "tokenizer")
MAX_LENGTH = 77

LONG_PROMPT = (
    "a highly detailed photograph of a majestic red fox sitting in a snowy forest at dawn, soft golden light "
    "filtering through the pine trees, mist rising from the frozen river, shallow depth of field, bokeh, "
    "shot on a 85mm lens at f/1.8, award winning wildlife photography, national geographic, ultra realistic, "
    "8k resolution, intricate fur texture, sharp focus on the eyes, cinematic color grading, volumetric fog"
)

PROMPTS = [
    "a red circle on a blue background",
    "",
    "A photo of an astronaut riding a horse on Mars",
    "  leading and trailing spaces   ",
    "multiple   spaces\tand\ttabs\nand\nnewlines\r\nand\r\n\r\nblank lines",
    "UPPER lower MiXeD CaSe",
    "it's a dog's life, isn't it? we're, they've, I'm, you'll, he'd",
    "IT'S SHOUTING, DON'T YOU'LL",
    "'sun 'tis 'll rock'n'roll ' lone ' apostrophes 's 't",
    "3.14 and 1,000 and 2024-01-01 and 100% and -42",
    "12345678901234567890",
    "mixed123numbers456 and v1.5 and sd-2.1 and 4k/8k",
    "café naïve résumé façade jalapeño",
    "Cafe\u0301 with a combining acute accent (NFC)",
    "Straße Ærøskøbing Œuvre ẞ ß ﬁ ligature",
    "İstanbul ΣΑΣ Ελληνικά Dž Ǉ ı",
    "Москва — русский текст",
    "一只可爱的猫 in a garden",
    "日本語のテキスト、カタカナ。ひらがな",
    "한국어 문장입니다",
    "ＡＩ生成 艺术作品 ＡＢＣ１２３",
    "arabic: مرحبا بالعالم",
    "hebrew: שלום עולם",
    "hindi: नमस्ते दुनिया",
    "thai: สวัสดีชาวโลก",
    "emoji 🐱🚀✨ and 👍🏽 skin tone",
    "family 👨\u200d👩\u200d👧 zwj sequence ❤️ heart",
    "emoji with text🙂inside",
    "<b>bold</b> &amp; <i>italic</i> &lt;tag&gt;",
    '<a href="https://example.com/path?q=1&x=2">link</a>',
    "(masterpiece:1.2), [bad], {best quality}, ((detailed)), (worst:0.5)",
    "<lora:myLora_v2:0.8> portrait, <hypernet:foo:1>",
    "punctuation!!! ??? ... --- ___ *** ~~~",
    "hello!",
    "wow!! amazing! ok",
    'quotes "double" \'single\' `back` «guillemets» “curly” ‘single curly’',
    "email@example.com #hashtag @mention $5.99 ^_^ 50/50",
    "a<|endoftext|>b",
    "<|startoftext|>already wrapped<|endoftext|>",
    "<|ENDOFTEXT|> uppercase special and <|startoftext|",
    "math ∑∫√∞ ≤≥ ± × ÷ ½ ² ³",
    "roman numerals Ⅻ ⅻ Ⅳ",
    "non\u00a0breaking\u2003em\u3000ideographic\u2028line\u0085next spaces",
    "control\u0000chars\u0007and\u200bzero\u200cwidth\ufeffbom\x1cfs",
    "tab\tseparated\tvalues",
    LONG_PROMPT,
    LONG_PROMPT + ", " + LONG_PROMPT,
    "a " * 74,
    "a " * 75,
    "a " * 76,
    "a " * 200,
    "supercalifragilisticexpialidocious antidisestablishmentarianism pneumonoultramicroscopic",
    "x",
    "!",
    "  ",
    "\n\n",
    "snake_case_words and kebab-case-words and CamelCaseWords",
    "file.png, image_01.jpg, C:\\Users\\path\\to\\file",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 math letters 𝐀𝐁𝐂 and 𝟙𝟚𝟛",
    "Dots...and—dashes–and…ellipsis",
    "a photo of a cat, 8k, uhd, dslr, soft lighting, high quality, film grain, Fujifilm XT3",
    "lowres, bad anatomy, bad hands, text, error, missing fingers, extra digit, fewer digits, cropped, worst "
    "quality, low quality, normal quality, jpeg artifacts, signature, watermark, username, blurry, artist name, "
    "deformed, ugly, duplicate, morbid, mutilated, out of frame, extra limbs",
    "BREAK word AND other",
    "e\u0301\u0301 double combining, a\u0308\u0304 stacked",
    "trailing apostrophe dogs'",
    "'",
    "ǅungla and ǈ and ǋ titlecase",
    "sphinx of black quartz, judge my vow",
]

# SD 2.x / SDXL (second tokenizer) style: pad "!" and special tokens stored as AddedToken dicts with
# normalized=true (so "<|ENDOFTEXT|>" matches after lower-casing), exactly as those repositories ship them.
def _added(content: str) -> dict:
    return {"__type": "AddedToken", "content": content, "lstrip": False, "normalized": True, "rstrip": False,
            "single_word": False}


PAD_BANG_TOKENIZER_CONFIG = {
    "add_prefix_space": False,
    "bos_token": _added("<|startoftext|>"),
    "do_lower_case": True,
    "eos_token": _added("<|endoftext|>"),
    "errors": "replace",
    "model_max_length": 77,
    "pad_token": "!",
    "tokenizer_class": "CLIPTokenizer",
    "unk_token": _added("<|endoftext|>"),
}
PAD_BANG_SPECIAL_TOKENS_MAP = {
    "bos_token": {k: v for k, v in _added("<|startoftext|>").items() if k != "__type"},
    "eos_token": {k: v for k, v in _added("<|endoftext|>").items() if k != "__type"},
    "pad_token": "!",
    "unk_token": {k: v for k, v in _added("<|endoftext|>").items() if k != "__type"},
}


def _write_json(path: str, obj, *, one_case_per_line: bool = False) -> int:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if one_case_per_line:
        # Compact, but one case per line so diffs stay readable.
        head = {k: v for k, v in obj.items() if k != "cases"}
        lines = [json.dumps(c, ensure_ascii=True, separators=(",", ":")) for c in obj["cases"]]
        text = json.dumps(head, ensure_ascii=True, indent=1, sort_keys=True)[:-2]
        text += ',\n "cases": [\n' + ",\n".join(lines) + "\n ]\n}\n"
        json.loads(text)  # well-formed
    else:
        text = json.dumps(obj, ensure_ascii=True, indent=1, sort_keys=True) + "\n"
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return os.path.getsize(path)


def _tokenizer_from_files_only(folder: str, config: dict | None, special_map: dict | None) -> CLIPTokenizer:
    """A tokenizer built from vocab.json + merges.txt (+ the given config files), without tokenizer.json."""
    tmp = tempfile.mkdtemp(prefix="clip_tok_")
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(os.path.join(folder, name), tmp)
    for name, obj in (("tokenizer_config.json", config), ("special_tokens_map.json", special_map)):
        src = os.path.join(folder, name)
        if obj is not None:
            with open(os.path.join(tmp, name), "w") as f:
                json.dump(obj, f)
        elif os.path.exists(src):
            shutil.copy(src, tmp)
    return CLIPTokenizer.from_pretrained(tmp)


def make_tokenizer_cases(out: str) -> None:
    main = CLIPTokenizer.from_pretrained(TOKENIZER_DIR)
    main_files_only = _tokenizer_from_files_only(TOKENIZER_DIR, None, None)
    bang = _tokenizer_from_files_only(TOKENIZER_DIR, PAD_BANG_TOKENIZER_CONFIG, PAD_BANG_SPECIAL_TOKENS_MAP)
    assert main.pad_token_id == main.eos_token_id == 49407 and main.bos_token_id == 49406, "unexpected special ids"
    assert bang.pad_token == "!" and bang.pad_token_id == 0, (bang.pad_token, bang.pad_token_id)
    assert main.model_max_length == MAX_LENGTH == bang.model_max_length

    def run(tok: CLIPTokenizer, text: str) -> tuple[list[int], list[int]]:
        tokens = tok(text, add_special_tokens=False).input_ids
        ids = tok(text, padding="max_length", max_length=MAX_LENGTH, truncation=True).input_ids
        assert len(ids) == MAX_LENGTH
        return tokens, ids

    cases = []
    assert len(set(PROMPTS)) == len(PROMPTS), "duplicate prompt"
    for text in PROMPTS:
        tokens, ids = run(main, text)
        if run(main_files_only, text) != (tokens, ids):
            raise AssertionError(f"tokenizer.json and vocab.json+merges.txt disagree on {text!r}")
        tokens_bang, ids_bang = run(bang, text)
        cases.append({"text": text, "tokens": tokens, "ids": ids, "tokens_pad_bang": tokens_bang, "ids_pad_bang": ids_bang})
    doc = {
        "about": "transformers CLIPTokenizer ids; see tools/parity/make_text_goldens.py",
        "tokenizer": "models/shapes-sd/tokenizer",
        "pad_bang_config": "tokenizer_pad_bang/",
        "max_length": MAX_LENGTH,
        "transformers_version": transformers.__version__,
        "tokenizers_version": __import__("tokenizers").__version__,
        "cases": cases,
    }
    size = _write_json(os.path.join(out, "tokenizer_cases.json"), doc, one_case_per_line=True)
    size += _write_json(os.path.join(out, "tokenizer_pad_bang", "tokenizer_config.json"), PAD_BANG_TOKENIZER_CONFIG)
    size += _write_json(os.path.join(out, "tokenizer_pad_bang", "special_tokens_map.json"), PAD_BANG_SPECIAL_TOKENS_MAP)
    longest = max(len(c["tokens"]) for c in cases)
    differ = sum(c["tokens"] != c["tokens_pad_bang"] for c in cases)
    print(f"tokenizer_cases: {len(cases)} prompts (longest {longest} tokens, {differ} tokenise differently with "
          f"pad '!'), {gio.fmt_size(size)}")


def _ranges(code_points: list[int]) -> list[list[int]]:
    """Sorted code points -> inclusive [first, last] runs."""
    runs: list[list[int]] = []
    for c in code_points:
        if runs and runs[-1][1] == c - 1:
            runs[-1][1] = c
        else:
            runs.append([c, c])
    return runs


def make_unicode_classes(out: str) -> None:
    """Measures the tokenizer's character classes on the `tokenizers` objects themselves (not on unicodedata)."""
    tok = CLIPTokenizer.from_pretrained(TOKENIZER_DIR)
    normalizer = tok.backend_tokenizer.normalizer
    pre = tok.backend_tokenizer.pre_tokenizer
    assigned, letters, numbers, whitespace, lowercase = [], [], [], [], []
    for c in range(0x110000):
        if 0xD800 <= c < 0xE000 or unicodedata.category(chr(c)) == "Cn":
            continue
        assigned.append(c)
        ch = chr(c)
        if normalizer.normalize_str("a" + ch + "b") == "a b":
            whitespace.append(c)
            continue
        if len(pre.pre_tokenize_str("a" + ch)) == 1:  # joins a letter run: \p{L}
            letters.append(c)
        elif len(pre.pre_tokenize_str(ch + ch)) == 2:  # never joins itself: one \p{N} per piece
            numbers.append(c)
        lowered = normalizer.normalize_str(ch)
        # Only characters NFC leaves alone, so the mapping is the lowercase step's alone.
        if unicodedata.normalize("NFC", ch) == ch and lowered != ch:
            lowercase.append([c, lowered])
    doc = {
        "about": "CLIP tokenizer character classes measured on the tokenizers normalizer/pre-tokenizer; "
                 "see tools/parity/make_text_goldens.py",
        "unicode_version": unicodedata.unidata_version,
        "tokenizers_version": __import__("tokenizers").__version__,
        "assigned": _ranges(assigned),
        "letters": _ranges(letters),
        "numbers": _ranges(numbers),
        "whitespace": _ranges(whitespace),
        "lowercase": lowercase,
    }
    text = json.dumps(doc, ensure_ascii=True, separators=(",", ":"), sort_keys=True) + "\n"
    path = os.path.join(out, "unicode_classes.json")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"unicode_classes: {len(letters)} letters, {len(numbers)} numbers, {len(whitespace)} whitespace, "
          f"{len(lowercase)} lowercase mappings, {gio.fmt_size(os.path.getsize(path))}")


# ---- text encoders -------------------------------------------------------------------------------------------

SEQ = MAX_LENGTH


def _ids_modern(vocab: int, eos: int, g: torch.Generator) -> torch.Tensor:
    """Two rows shaped like tokenizer output: BOS-like id, words, EOS, then padding. Ids larger than EOS
    appear before it, so the argmax rule (legacy configs) would pick a different position than the
    first-EOS rule. Row 0 pads with EOS (SD 1.x), row 1 with id 0 (SD 2.x's "!")."""
    ids = torch.randint(3, vocab, (2, SEQ), generator=g)
    ids[ids == eos] = eos + 1
    ids[:, 0] = vocab - 2
    ids[0, 9:] = eos
    ids[1, 40] = eos
    ids[1, 41:] = 0
    ids[:, 3] = vocab - 1  # the largest id, before the EOS
    return ids


def _ids_legacy(vocab: int, g: torch.Generator) -> torch.Tensor:
    """Legacy configs (eos_token_id == 2) pool at argmax(ids): the EOS of real CLIP is the largest id.
    Id 2 itself appears earlier, so the first-EOS rule would pick a different position."""
    ids = torch.randint(3, vocab - 1, (2, SEQ), generator=g)
    ids[:, 0] = vocab - 2
    ids[:, 2] = 2
    ids[0, 12] = vocab - 1
    ids[0, 13:] = vocab - 1  # SD 1.x pads with EOS: ties, argmax takes the first
    ids[1, 30] = vocab - 1
    ids[1, 31:] = 0
    return ids


TEXT_CASES = {
    # SD 1.x-like: quick_gelu, current-style eos_token_id (first-EOS pooling), transformers 5 state_dict names
    # (no "text_model." prefix). All hidden states stored.
    "clip_text_quick_gelu": dict(
        cls=CLIPTextModel, prefix="", ids="modern", hidden_states=[0, 1, 2], clip_skip=[1],
        config=dict(vocab_size=1000, hidden_size=32, intermediate_size=64, num_attention_heads=4, num_hidden_layers=2,
                    max_position_embeddings=77, hidden_act="quick_gelu", layer_norm_eps=1e-5, eos_token_id=500,
                    bos_token_id=998, pad_token_id=1, projection_dim=32)),
    # Legacy eos_token_id=2 (SD 1.x's real text_encoder/config.json): argmax pooling. Stored with the
    # "text_model." prefix of real checkpoints.
    "clip_text_legacy_eos": dict(
        cls=CLIPTextModel, prefix="text_model.", ids="legacy", hidden_states=[1], clip_skip=[1],
        config=dict(vocab_size=256, hidden_size=32, intermediate_size=64, num_attention_heads=4, num_hidden_layers=2,
                    max_position_embeddings=77, hidden_act="quick_gelu", layer_norm_eps=1e-5, eos_token_id=2,
                    bos_token_id=0, pad_token_id=1, projection_dim=32)),
    # SD 2.x-like: exact-erf gelu, 2 heads of 16, odd MLP width, another layer_norm_eps.
    "clip_text_gelu": dict(
        cls=CLIPTextModel, prefix="", ids="modern", hidden_states=[1], clip_skip=[1],
        config=dict(vocab_size=256, hidden_size=32, intermediate_size=48, num_attention_heads=2, num_hidden_layers=2,
                    max_position_embeddings=77, hidden_act="gelu", layer_norm_eps=1e-6, eos_token_id=200,
                    bos_token_id=254, pad_token_id=1, projection_dim=32)),
    # SDXL's second encoder: CLIPTextModelWithProjection, gelu, legacy eos, projection to 24.
    "clip_text_with_projection": dict(
        cls=CLIPTextModelWithProjection, prefix=None, ids="legacy", hidden_states=[1], clip_skip=[],
        config=dict(vocab_size=256, hidden_size=32, intermediate_size=64, num_attention_heads=4, num_hidden_layers=2,
                    max_position_embeddings=77, hidden_act="gelu", layer_norm_eps=1e-5, eos_token_id=2,
                    bos_token_id=0, pad_token_id=1, projection_dim=24)),
}


def make_text_model(out: str, case: str, spec: dict) -> int:
    g = gio.make_generator(case)
    config = CLIPTextConfig(**spec["config"])
    config._attn_implementation = "sdpa"
    model = spec["cls"](config).eval()
    gio.init_params(model, g, gain=1.0, special_gain={"q_proj.": 1.5, "k_proj.": 1.5})
    vocab = config.vocab_size
    ids = _ids_modern(vocab, config.eos_token_id, g) if spec["ids"] == "modern" else _ids_legacy(vocab, g)
    with torch.no_grad():
        result = model(ids, output_hidden_states=True)
        text_model = model.text_model if isinstance(model, CLIPTextModelWithProjection) else model
        outputs = {"last_hidden_state": result.last_hidden_state}
        for i in spec["hidden_states"]:
            outputs[f"hidden_states.{i}"] = result.hidden_states[i]
        for n in spec["clip_skip"]:
            outputs[f"clip_skip.{n}"] = text_model.final_layer_norm(result.hidden_states[-(n + 1)])
        if isinstance(model, CLIPTextModelWithProjection):
            outputs["text_embeds"] = result.text_embeds
            outputs["pooler_output"] = text_model(ids).pooler_output
        else:
            outputs["pooler_output"] = result.pooler_output
    assert len(result.hidden_states) == config.num_hidden_layers + 1

    params = gio.module_params(model)
    if spec["prefix"]:
        params = {spec["prefix"] + k: v for k, v in params.items()}
    config_dict = config.to_dict()
    config_dict["architectures"] = [spec["cls"].__name__]
    config_dict.pop("_attn_implementation_autoset", None)
    forward = "result = m(input.ids.long(), output_hidden_states=True)"
    return gio.write_golden(
        os.path.join(out, f"{case}.safetensors"), case, gio.class_path(model), spec["config"],
        inputs={"ids": ids.to(torch.float32)}, params=params, outputs=outputs,
        extra_metadata={
            "config": json.dumps(config_dict, sort_keys=True),
            "forward": forward,
            "transformers_version": transformers.__version__,
        })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=DEFAULT_OUT)
    args = parser.parse_args()
    gio.setup_torch()
    make_tokenizer_cases(args.out)
    make_unicode_classes(args.out)
    total = 0
    for case, spec in TEXT_CASES.items():
        size = make_text_model(args.out, case, spec)
        total += size
        print(f"{case}: {gio.fmt_size(size)}")
    print(f"text encoders: {gio.fmt_size(total)}")


if __name__ == "__main__":
    main()
