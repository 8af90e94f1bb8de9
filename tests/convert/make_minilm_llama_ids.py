"""Regenerate ``fixtures/minilm_llama_ids.json``: llama.cpp's token ids, on the all-MiniLM-L6-v2
GGUF that ``kettle convert`` writes, of a table of strings across scripts, marks, symbols,
controls and random codepoints (``STRINGS``).

    pip install llama-cpp-python
    python -m tests.convert.make_minilm_llama_ids
"""

from __future__ import annotations

import json
import random
import tempfile
from pathlib import Path

from kettle.convert import convert
from tests.convert.minilm import extract

OUT = Path(__file__).parent / "fixtures" / "minilm_llama_ids.json"

FIXED = [
    "Héllo Wörld ÀÉÎÕÜ ñ ç ø å æ œ ß ẞ ﬁ ﬂ", "İstanbul ıi Iİ", "Ελληνικά Άλφα ΣΊΣΥΦΟΣ", "Русский ЁЛКА йод",
    "日本語のテキスト カタカナ ﾊﾝｶｸ", "한국어 텍스트", "العربية نص", "עברית", "हिन्दी", "ไทย", "emoji 😀👍🏽 🇫🇷",
    "tab\tnew\nline\r\n\x00null\x07bell\u200bzwsp\u00adshy", "e\u0301 combining a\u0308", "ＦＵＬＬＷＩＤＴＨ １２３",
    "∑∫√∞ ≠ ≤ ≥ ± × ÷ € £ ¥ © ® ™", "don't won't it's", "U.S.A. e-mail foo@bar.com http://x.y/z?a=b&c=d",
    "3.14 1,000,000 -5 +7 1e10", "¿Qué? ¡Sí!", "«quotes» „deutsch“ ‘single’", "\ufeffBOM", "a\u2028b\u2029c",
    "x" * 300, "supercalifragilisticexpialidocious antidisestablishmentarianism", "Ǆǅǆ ǈ Ǉ", "ΐ ΰ ﬀ", "Å Å",
    "〜〰〽", "ⅠⅡⅢ ⓐⓑ", "\U0001d400\U0001d401 math bold", "[CLS] [SEP] [MASK] literal specials", "",
]


def strings() -> list[str]:
    rng = random.Random(0)
    out = list(FIXED)
    for _ in range(200):
        n = rng.randrange(1, 30)
        out.append("".join(chr(rng.choice([rng.randrange(32, 0x250), rng.randrange(0x370, 0x3000),
                                           rng.randrange(0x3000, 0xA000), rng.randrange(0xAC00, 0xD7A4),
                                           rng.randrange(0x1F300, 0x1FAFF), 32])) for _ in range(n)))
    return [s for s in out if not any(0xD800 <= ord(c) <= 0xDFFF for c in s)]


def main() -> None:
    import llama_cpp

    with tempfile.TemporaryDirectory() as tmp:
        path = convert(extract(Path(tmp)), Path(tmp) / "minilm.gguf", "f16")
        llm = llama_cpp.Llama(str(path), vocab_only=True, verbose=False)
        table = [{"text": s, "ids": llm.tokenize(s.encode("utf-8"), add_bos=True, special=False)} for s in strings()]
    OUT.write_text(json.dumps({"llama_cpp_python": llama_cpp.__version__, "cases": table}, ensure_ascii=False,
                              indent=0) + "\n")
    print(f"wrote {OUT} ({len(table)} strings)")


if __name__ == "__main__":
    main()
