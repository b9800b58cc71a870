"""Reading names and text that are not marked as UTF-8: ZIP entry names, CSV files,
folder names in bytes.

A ZIP written by Windows' built-in "compressed folder" (and by many older tools) stores
its names in the machine's legacy code page (cp932 on a Japanese system, cp850 in
Western Europe, cp866 in Russia...) without the UTF-8 flag; ``zipfile`` then reads them
as cp437, which turns ``アカハライモリ`` into ``âAâJânâëâCâéâè``. The rule here:

1. text that is valid UTF-8 is UTF-8;
2. otherwise the encoding the user named (``--filename-encoding``), decoded strictly:
   a name it cannot decode is an error naming it;
3. otherwise every likely legacy encoding is tried, and the one that decodes all the
   names cleanly into the most plausible text wins (kana and common kanji for cp932, the
   GB2312 core for GBK, KS X 1001 Hangul for cp949, words of one script with few
   accented letters for the single-byte code pages).

What was chosen, and the close alternatives, is said in the import report
(``Reading.note``): class names are never invented silently.
"""

from __future__ import annotations

import codecs
import unicodedata
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from core.errors import DatasetError

# The legacy encodings tried, in order of preference when two read the same.
CANDIDATES: tuple[tuple[str, str], ...] = (
    ("cp932", "Japanese, Shift JIS"),
    ("gbk", "Simplified Chinese, GBK"),
    ("cp949", "Korean, EUC-KR/UHC"),
    ("cp950", "Traditional Chinese, Big5"),
    ("cp850", "Western European, DOS"),
    ("cp437", "US, DOS"),
    ("cp1252", "Western European, Windows"),
    ("cp852", "Central European, DOS"),
    ("cp1250", "Central European, Windows"),
    ("cp866", "Cyrillic, DOS"),
    ("cp1251", "Cyrillic, Windows"),
    ("cp737", "Greek, DOS"),
    ("cp1253", "Greek, Windows"),
    ("cp857", "Turkish, DOS"),
    ("cp1254", "Turkish, Windows"),
    ("cp874", "Thai"),
)
_ABOUT = dict(CANDIDATES)
_DOUBLE_BYTE = {"cp932", "gbk", "cp949", "cp950"}
# An alternative whose score is at least this share of the winner's is mentioned.
CLOSE = 0.75
# How a user chooses the encoding, as notes say it.
OPTION = "--filename-encoding ENC (File-name encoding on the Datasets page)"


def describe(encoding: str) -> str:
    """``cp932 (Japanese, Shift JIS)``; an encoding outside the list by its name."""
    about = _ABOUT.get(encoding)
    return f"{encoding} ({about})" if about else encoding


def check_encoding(name: str | None) -> str | None:
    """The codec's canonical name, None for none/"auto", or a ``DatasetError``."""
    if name is None or not str(name).strip() or str(name).strip().lower() in ("auto", "automatic"):
        return None
    text = str(name).strip()
    try:
        info = codecs.lookup(text)
    except LookupError:
        info = None
    if info is None or not getattr(info, "_is_text_encoding", True):  # base64, rot13...: not a text encoding
        shown = ", ".join(e for e, _ in CANDIDATES[:8])
        raise DatasetError(
            f"unknown encoding {text!r}: name one Python knows, such as utf-8, {shown} (or leave it out to have it guessed)"
        ) from None
    return info.name


def is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


# -- how plausible a decoded text is ------------------------------------------------------------


def _script(ch: str) -> str:
    name = unicodedata.name(ch, "")
    return name.split(" ", 1)[0] if name else ""


# Characters common in each language's names and words (several hundred each): the same
# bytes read in the wrong double-byte code page land on characters of that page's core set
# too (GBK and EUC-KR share their byte structure), but seldom on its common ones.
_COMMON_HANZI = set(
    "的一是不了人我在有他这为之大来以个中上们到说国和地也子时道出而要于就下得可你年生自会那后能对着事其里所去"
    "行过家十用发天如然作方成者多日都三小军二无同么经法当起与好看学进种将还分此心前面又定见只主没公从知使已开"
    "给回动长东西南北手意头文正体电话问很最重机全高明本女力现实点加两情老次想外相先少新利水白五部由理社身把美"
    "四样原物品色红黄蓝绿黑花草鸟鱼狗猫马牛羊猪虫树木山川河石图片照车飞船海风雨雪云火土金银铜铁门窗房屋桌椅"
    "书笔纸画字名号码类别组第甲乙丙丁正负左右上下内外前后早晚春夏秋冬男女老少猴虎狮熊象鹿兔鼠蛇龟蛙鸡鸭鹅"
    "蝶蜂蚁鹰鹤燕鸽雀狼狐豹羚驴骡猫咪宠物野生动植物叶果菜米面肉蛋奶茶酒饭食衣服鞋帽包箱瓶杯碗盘刀枪球灯"
    "路桥城市村镇省县区街站场园林院校医药病人脸眼耳鼻口牙手脚腿身体头发心肝皮骨血数据集训练测试验证样本"
    "图像照片视频素材原始处理结果标签分类目录文件夹正常异常好坏真假新旧大中小高低快慢冷热干湿亮暗清楚模糊"
    "一二三四五六七八九十百千万亿零两个只条张本件台辆架匹头群对双套份次回号期级层座间室厅厨卫阳台"
    "红橙黄绿青蓝紫白黑灰粉棕色彩光影天空地面水池湖江河海岛沙漠森林草原田野农场工厂公司学校医院银行商店"
    "蝾螈蜥蜴蟾蜍鳄鲸鲨鳗蝌蚪龙凤蚕蛛蝎蜗虾蟹贝壳珊瑚蜻蜓蝴蝉螃蚌蚯蚓"
)
_COMMON_HANZI_TRADITIONAL = set(
    "的一是不了人我在有他這為之大來以個中上們到說國和地也子時道出而要於就下得可你年生自會那後能對著事其裡所去"
    "行過家十用發天如然作方成者多日都三小軍二無同麼經法當起與好看學進種將還分此心前面又定見只主沒公從知使已開"
    "給回動長東西南北手意頭文正體電話問很最重機全高明本女力現實點加兩情老次想外相先少新利水白五部由理社身把美"
    "四樣原物品色紅黃藍綠黑花草鳥魚狗貓馬牛羊豬蟲樹木山川河石圖片照車飛船海風雨雪雲火土金銀銅鐵門窗房屋桌椅"
    "書筆紙畫字名號碼類別組第甲乙丙丁正負左右男女老少猴虎獅熊象鹿兔鼠蛇龜蛙雞鴨鵝蝶蜂蟻鷹鶴燕鴿雀狼狐豹"
    "寵野生植葉果菜米麵肉蛋奶茶酒飯食衣服鞋帽包箱瓶杯碗盤刀槍球燈路橋城市村鎮省縣區街站場園林院校醫藥病"
    "臉眼耳鼻口牙腳腿髮心肝皮骨血數據集訓練測試驗證樣本像視頻素材始處理結果標籤分類目錄檔案夾常異壞真假舊"
    "六七八九百千萬億零隻條張件台輛架匹群對雙套份次回期級層座間室廳廚衛陽橙青紫灰粉棕彩光影空池湖江島沙漠"
    "森田農工廠公司醫銀商店蠑螈蜥蜴蟾蜍鱷鯨鯊鰻蝌蚪龍鳳蠶蛛蠍蝸蝦蟹貝殼珊瑚蜻蜓蝴蟬螃蚌蚯蚓"
)
_COMMON_HANGUL = set(
    "이다는의에가고하지기사서로을를한리자어도나정대들니수시인일아해으내게장전주구만적우보부국상중문성소제생있"
    "년것그동되였요경화원무미방비신라조여오세물러공위없학실회연선식마발분계개행진유관저모치안교결업당거데말"
    "드금명과와또간할점통재입본산처더민면력영함및반권까바터단호스트불받음용법속후체임차심질표종운태작난활양"
    "남쓰놓알볼진짜사진영상파일폴더데이터학습검증시험테스트훈련분류정상불량좋은나쁜고양이강아지새물고기뱀"
    "거북토끼돼지닭꽃나무자동차버스비행기배집문창의자책상컴퓨터전화사람남자여자아이얼굴손발눈코입귀머리"
    "하늘바다산강호수도시마을길다리건물학교병원은행가게빨강노랑파랑초록검정하양회색색깔큰작은새로운오래된"
    "도롱뇽영원개구리두꺼비잠자리나비벌개미거미곤충동물식물과일채소사과배포도딸기수박감귤바나나토마토"
    "하나둘셋넷다섯여섯일곱여덟아홉열백천만첫째번호종류그룹기타샘플원본결과"
)


_COMMON_LATIN = set(
    "àáâãäåæçèéêëìíîïñòóôöøùúûüýßÀÁÂÃÄÅÆÇÈÉÊËÌÍÎÏÑÒÓÔÖØÙÚÛÜÝœŒąćęłńśźżĄĆĘŁŃŚŹŻčďěňřšťůžČĎĚŇŘŠŤŮŽőűŐŰğışĞİŞ"
)
_RARE_CYRILLIC = set("ђѓќѕџљњћјўЂЃЌЅЏЉЊЋЈЎ")
_NOT_RUSSIAN = set("ЄєЇїІі")  # in cp866 (Russian DOS) these are the odd ones out
_VOWELS = set(
    "aeiouyàáâãäåæèéêëìíîïòóôõöøùúûüýÿœąęěůőűı"
    "аеёиоуыэюяієї"
    "αεηιουωάέήίόύώϊϋΐΰ"
)
_HALF_KANA = (0xFF61, 0xFF9F)


def _cjk_weight(ch: str, encoding: str) -> float:
    """Common characters of the encoding's own language score high, rare ones low: the same
    bytes read in the wrong double-byte code page land on rare characters. One character
    stands for two bytes, so a plain one scores about two single-byte letters."""
    if encoding == "utf-8":  # real text: as its likeliest language would score it
        return max(_cjk_weight(ch, e) for e in ("cp932", "gbk", "cp949", "cp950"))
    try:
        raw = ch.encode(encoding)
    except UnicodeEncodeError:
        return -1.0
    if len(raw) != 2:
        return -1.0
    lead, trail = raw[0], raw[1]
    code = lead << 8 | trail
    cp = ord(ch)
    kana = 0x3041 <= cp <= 0x30FF
    hangul = 0xAC00 <= cp <= 0xD7A3
    if encoding == "cp932":
        if kana:
            return 4.0
        if 0x889F <= code <= 0x9872:  # JIS level 1 kanji
            return 3.0
        if 0x989F <= code <= 0xEAA4:  # level 2
            return 1.0
        return -1.0  # NEC / IBM extensions
    if encoding == "gbk":
        if ch in _COMMON_HANZI:
            return 4.0
        if 0xB0 <= lead <= 0xD7 and trail >= 0xA1:  # GB2312 level 1 hanzi
            return 2.0
        if 0xD8 <= lead <= 0xF7 and trail >= 0xA1:  # level 2
            return 1.0
        return 1.0 if kana else -1.0
    if encoding == "cp949":
        if hangul:
            if ch in _COMMON_HANGUL:
                return 4.0
            return 2.0 if 0xB0 <= lead <= 0xC8 and trail >= 0xA1 else -1.0  # KS X 1001 / UHC extension
        if 0xCA <= lead <= 0xFD and trail >= 0xA1:  # hanja
            return 0.6
        return 1.0 if kana else -1.0
    if encoding == "cp950":
        if ch in _COMMON_HANZI_TRADITIONAL:
            return 4.0
        if 0xA440 <= code <= 0xC67E:  # frequently used characters
            return 2.0
        if 0xC940 <= code <= 0xF9D5:  # less frequently used
            return 1.0
        return 1.0 if kana else -1.0
    return -1.0


def _char_score(ch: str, encoding: str) -> float:
    cp = ord(ch)
    if cp < 0x80:
        return 0.0 if ch.isprintable() else -10.0
    category = unicodedata.category(ch)
    if category in ("Cc", "Cf", "Co", "Cn", "Cs", "Zl", "Zp"):
        return -10.0
    if _HALF_KANA[0] <= cp <= _HALF_KANA[1]:  # what cp932 makes of other encodings' bytes (see _word_score)
        return -1.0
    if 0x3000 <= cp <= 0x303F or 0xFF01 <= cp <= 0xFF60:  # CJK punctuation, full-width forms
        return 0.0 if encoding in _DOUBLE_BYTE else -2.0
    if 0x3041 <= cp <= 0x30FF or 0x4E00 <= cp <= 0x9FFF or 0xAC00 <= cp <= 0xD7A3 or 0xF900 <= cp <= 0xFAFF:
        return _cjk_weight(ch, encoding)
    if category.startswith("L"):
        if cp in (0x0192, 0x00AA, 0x00BA, 0x00B5):  # ƒ ª º µ: letters, but never in real names
            return -2.0
        script = _script(ch)
        if script == "LATIN":
            return 1.5 if ch in _COMMON_LATIN else 0.5
        if script == "CYRILLIC":
            rare = _RARE_CYRILLIC | (_NOT_RUSSIAN if encoding == "cp866" else set())
            return 0.0 if ch in rare else 1.5
        return 1.5
    if category.startswith("M"):
        return 0.0
    return -2.0 if category[0] in "NSZ" else -1.0  # ² ½, box drawing, currency, no-break space; punctuation


def _is_cjk(ch: str) -> bool:
    cp = ord(ch)
    return 0x3041 <= cp <= 0x30FF or 0x4E00 <= cp <= 0x9FFF or 0xAC00 <= cp <= 0xD7A3 or _HALF_KANA[0] <= cp <= _HALF_KANA[1]


def _word_score(word: str) -> float:
    """Words of one script, with a vowel, few accented letters and no case flips mid-word;
    a word of half-width katakana alone is real (old Japanese systems wrote them)."""
    if all(_HALF_KANA[0] <= ord(c) <= _HALF_KANA[1] or ord(c) < 0x80 for c in word):
        return 1.75 * sum(_HALF_KANA[0] <= ord(c) <= _HALF_KANA[1] for c in word)
    scripts = {_script(c) for c in word if c.isalpha()}
    alphabetic = scripts & {"LATIN", "CYRILLIC", "GREEK", "ARMENIAN", "HEBREW", "ARABIC", "THAI", "GEORGIAN"}
    foreign = [c for c in word if ord(c) >= 0x80 and c.isalpha()]
    if not foreign:
        return 0.0
    penalty = 0.0
    for prev, c in zip(word, word[1:]):  # a CJK character glued to Latin letters
        if (_is_cjk(prev) and c.isascii()) or (prev.isascii() and _is_cjk(c)):
            penalty += 1.5
    if len(alphabetic) > 1:
        penalty += 3.0 * len(foreign)
    run = 0
    for c in word:  # three accented letters in a row: no language writes that
        run = run + 1 if ord(c) >= 0x80 and _script(c) == "LATIN" else 0
        if run >= 3:
            penalty += 2.0
    if alphabetic and scripts <= {"LATIN", "CYRILLIC", "GREEK"} and len(word) >= 3 and not any(c.lower() in _VOWELS for c in word):
        penalty += 2.0 * len(word)
    for prev, c in zip(word, word[1:]):
        if c.isupper() and prev.islower() and (ord(c) >= 0x80 or ord(prev) >= 0x80):
            penalty += 2.0
    return -penalty


def plausibility(text: str, encoding: str) -> float:
    """How much ``text`` (decoded with ``encoding``) reads like real names: higher is better."""
    score = sum(_char_score(c, encoding) for c in text)
    word: list[str] = []
    for c in text + " ":
        if unicodedata.category(c)[0] in "LM":
            word.append(c)
        elif word:
            score += _word_score("".join(word))
            word = []
    return score


# -- choosing ------------------------------------------------------------------------------------


@dataclass
class Reading:
    """How a set of names (or a text) was decoded."""

    encoding: str | None  # None: all ASCII or UTF-8 (nothing to say)
    how: str = "utf-8"  # "utf-8", "given" or "guessed"
    alternatives: list[str] = field(default_factory=list)  # guessed: other encodings that read almost as well
    what: str = "file names"

    def note(self, where: str, option: str = OPTION) -> str | None:
        """A sentence for the import report, or None when there is nothing to say."""
        if self.encoding is None:
            return None
        subject = f"{where} is" if self.what == "the text" else f"{self.what} in {where} are"
        if self.how == "given":
            return f"{subject} not UTF-8: read as {describe(self.encoding)}, as asked"
        others = f" (also possible: {', '.join(describe(a) for a in self.alternatives)})" if self.alternatives else ""
        return (
            f"{subject} not marked as UTF-8: read as {describe(self.encoding)}, the likeliest legacy "
            f"encoding{others}; if the class names look wrong, import again choosing the encoding with {option}"
        )


def guess(texts: Sequence[bytes]) -> tuple[str, list[str]]:
    """The likeliest legacy encoding of ``texts`` (none of them all UTF-8), and the close
    alternatives that read them differently. cp437 decodes any bytes, so there is always one."""
    scored: list[tuple[float, int, str, tuple[str, ...]]] = []
    for order, (encoding, _) in enumerate(CANDIDATES):
        try:
            decoded = tuple(t.decode(encoding) for t in texts)
        except UnicodeDecodeError:
            continue
        score = sum(plausibility(d, encoding) for d in decoded)
        scored.append((score, order, encoding, decoded))
    if not scored:  # unreachable with cp437 in the list; kept for a changed list
        return "cp437", []
    scored.sort(key=lambda s: (-s[0], s[1]))
    best_score, _, best, best_text = scored[0]
    alternatives: list[str] = []
    seen = {best_text}
    for score, _, encoding, decoded in scored[1:]:
        if decoded in seen:
            continue  # reads the same: it makes no difference
        seen.add(decoded)
        if best_score <= 0 or score >= CLOSE * best_score:
            alternatives.append(encoding)
        if len(alternatives) >= 2:
            break
    return best, alternatives


def decode_names(raws: Sequence[bytes], given: str | None = None, *, what: str = "file names") -> tuple[list[str], Reading]:
    """Each name as text, by the rule at the top of this module.

    ``given`` is an encoding the user chose (checked with ``check_encoding``); a name it
    cannot decode raises ``DatasetError`` naming it.
    """
    given = check_encoding(given)
    foreign = [r for r in raws if not r.isascii()]
    if not foreign:
        return [r.decode("ascii") for r in raws], Reading(None, what=what)
    if given is not None:
        out = []
        for raw in raws:
            try:
                out.append(raw.decode(given))
            except (UnicodeError, ValueError):
                likely, _ = guess([raw]) if not is_utf8(raw) else ("utf-8", [])
                shown = raw.decode(likely, "replace")
                raise DatasetError(
                    f"the name {shown!r} (as {likely} reads it) is not valid {given}: choose another encoding, "
                    "or leave it out to have it guessed"
                ) from None
        return out, Reading(given, "given", what=what)
    legacy = [r for r in foreign if not is_utf8(r)]
    if not legacy:
        return [r.decode("utf-8") for r in raws], Reading(None, what=what)
    encoding, alternatives = guess(legacy)
    return [_either(r, encoding) for r in raws], Reading(encoding, "guessed", alternatives, what=what)


def _either(raw: bytes, encoding: str) -> str:
    """A name in an archive that is not UTF-8: in ``encoding``, unless it is valid UTF-8 and
    reads better so (one tool wrote some names in UTF-8, another in the code page)."""
    if not is_utf8(raw):
        return raw.decode(encoding)
    utf8 = raw.decode("utf-8")
    try:
        other = raw.decode(encoding)
    except UnicodeDecodeError:
        return utf8
    return other if plausibility(other, encoding) > plausibility(utf8, "utf-8") else utf8


def nfc(text: str) -> str:
    """macOS writes names decomposed (``カ`` + ``゛``); compare and store them composed."""
    return unicodedata.normalize("NFC", text)


# -- whole texts (CSV files) ---------------------------------------------------------------------

_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def _decode_prefix(raw: bytes, encoding: str, partial: bool) -> str:
    """Decode strictly; when ``raw`` is only the start of a file, a character cut at the end is dropped."""
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as err:
        if partial and err.start >= len(raw) - 4:
            return raw[: err.start].decode(encoding)
        raise


def decode_text(raw: bytes, given: str | None = None, *, partial: bool = False) -> tuple[str, Reading]:
    """A text file's content (a CSV): by its byte-order mark (Excel's "Unicode text" is
    UTF-16), as UTF-8, in ``given``, or in the likeliest legacy encoding; with how it was read.
    ``partial``: ``raw`` is the start of the file only."""
    for bom, encoding in _BOMS:
        if raw.startswith(bom):
            try:
                text = _decode_prefix(raw, encoding, partial)
            except UnicodeDecodeError:
                break
            return text, Reading(None, what="the text")
    try:
        return _decode_prefix(raw, "utf-8", partial), Reading(None, what="the text")
    except UnicodeDecodeError:
        pass
    given = check_encoding(given)
    if given is not None:
        try:
            return _decode_prefix(raw, given, partial), Reading(given, "given", what="the text")
        except (UnicodeError, ValueError) as err:
            where = f" (at byte {err.start})" if isinstance(err, UnicodeDecodeError) else ""
            raise DatasetError(f"the text is not valid {given}{where}: choose another encoding") from None
    lines = [line for line in raw.splitlines() if not line.isascii()][:200]
    encoding, alternatives = guess(_trim_lines(lines, partial))
    try:
        return _decode_prefix(raw, encoding, partial), Reading(encoding, "guessed", alternatives, what="the text")
    except UnicodeDecodeError:
        return raw.decode("cp437"), Reading("cp437", "guessed", what="the text")


def _trim_lines(lines: Iterable[bytes], partial: bool) -> list[bytes]:
    lines = list(lines)
    if partial and lines:
        lines = lines[:-1] or lines  # the last line may be cut in the middle of a character
    return lines
