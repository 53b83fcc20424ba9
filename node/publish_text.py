"""The words of the static copy (`dazibao publish`), in English and Simplified Chinese.

The static copy has its own few dozen messages, kept here rather than in the web UI's catalog
(node/web/locale), which holds the member UI's messages and nothing else.  Templates in
node/publish_templates/ use ``_()`` and ``ngettext()`` as the web UI's templates do; English is
the source, and :data:`ZH` translates every message (tests/mirror/test_publish_language.py
checks that none is missing).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["LANGUAGES", "ZH", "callables"]

#: ``--lang`` values and the ``publish_language`` setting, with the ``lang`` attribute of each.
LANGUAGES = {"en": "en", "zh": "zh-Hans"}

ZH: dict[str, str] = {
    # base.html and _post.html
    "dazibao · read-only copy": "dazibao · 只读副本",
    "A static, read-only copy made by dazibao %(version)s.": "由 dazibao %(version)s 生成的静态只读副本。",
    "Whoever hosts these pages can alter them; the signed posts in %(bundle)s cannot be forged.":
        "托管这些页面的人可以改动页面，但 %(bundle)s 里带签名的帖子无法伪造。",
    "How to verify this copy": "如何验证这份副本",
    "author fingerprint": "作者指纹",
    "name also used by another key": "另一个密钥也用这个名字",
    "in reply to": "回复",
    "(not in this copy)": "（不在这份副本中）",
    "post id": "帖子编号",
    "read the thread": "阅读整个主题",
    # index.html
    "dazibao · read-only copy of %(boards)s": "dazibao · %(boards)s 的只读副本",
    "Read-only copy": "只读副本",
    "This folder is a static copy of %(boards)s of a dazibao node, with %(posts)s, made on %(time)s. "
    "It can be read from any web host or straight from a disk.":
        "这个文件夹是一个 dazibao 节点上 %(boards)s的静态副本，共 %(posts)s，生成于 %(time)s。"
        "可以放在任何网站上阅读，也可以直接从磁盘打开。",
    "%(num)s board": "%(num)s 个版块",
    "%(num)s boards": "%(num)s 个版块",
    "%(num)s post": "%(num)s 条帖子",
    "%(num)s posts": "%(num)s 条帖子",
    "%(num)s thread": "%(num)s 个主题",
    "%(num)s threads": "%(num)s 个主题",
    "%(num)s reply": "%(num)s 条回复",
    "%(num)s replies": "%(num)s 条回复",
    "Boards": "版块",
    "board": "版块",
    "threads": "主题",
    "posts": "帖子",
    "latest": "最新",
    "Verify this copy": "验证这份副本",
    "Anyone who hosts or passes on these pages can change them. The posts themselves cannot be changed "
    "or forged: each one is signed by its author's key. To check them, download the bundle %(bundle)s "
    "(%(posts)s, %(bytes)s bytes) and import it into your own dazibao node:":
        "托管或转发这些页面的人都可以改动页面，但帖子本身无法改动或伪造：每条帖子都由作者的密钥签名。"
        "要核实它们，请下载数据包 %(bundle)s（%(posts)s，%(bytes)s 字节），导入你自己的 dazibao 节点：",
    "Your node checks every post's signature and refuses any post that was altered or forged, and it "
    "says if the file was damaged or cut short. Then compare: each post here shows its author's "
    "fingerprint and its id, and %(command)s on your node shows the same for the posts it accepted. "
    "A post shown here but refused by your node, or with another fingerprint, was not written by the "
    "key it claims.":
        "你的节点会检查每条帖子的签名，拒收被改动或伪造的帖子；文件损坏或不完整时也会提示。"
        "然后对照：这里的每条帖子都显示作者指纹和帖子编号，在你的节点上运行 %(command)s "
        "会显示它接受的帖子的同样信息。这里显示、却被你的节点拒收或指纹不同的帖子，"
        "并不是它声称的那个密钥写的。",
    # board.html
    "%(board)s · dazibao read-only copy": "%(board)s · dazibao 只读副本",
    "%(threads)s, %(posts)s.": "%(threads)s，%(posts)s。",
    "Page %(page)s of %(pages)s.": "第 %(page)s 页，共 %(pages)s 页。",
    "Latest activity first.": "最近有动态的在前。",
    "No posts of this board are in this copy.": "这份副本里没有这个版块的帖子。",
    "replies to a post not in this copy": "回复的帖子不在这份副本中",
    "last": "最后回复",
    "newer": "较新",
    "older": "较早",
    "page %(page)s of %(pages)s": "第 %(page)s 页，共 %(pages)s 页",
    # thread.html
    "%(title)s · %(board)s · dazibao read-only copy": "%(title)s · %(board)s · dazibao 只读副本",
    "thread": "主题",
    "replies": "回复",
    "The post these replies answer (%(id)s) is not in this copy: it was retracted or purged, is on "
    "another board, or had not arrived when the copy was made.":
        "这些回复所回应的帖子（%(id)s）不在这份副本中：它已被撤回或清除、在另一个版块，"
        "或者生成副本时还没有送达。",
    # board.html: pinned posts; _organizing.html and the collective-action pages
    "Pinned": "置顶",
    "Pinned by the moderators this node follows on the board.": "由本节点在这个版块关注的版主置顶。",
    "Company reports": "公司报告",
    "Letters and pledges": "联名信和门槛承诺",
    "Translations": "翻译",
    "translation (%(lang)s), signed by its translator, not by the author":
        "翻译（%(lang)s），由译者签名，而不是原作者",
    "%(num)s pseudonym": "%(num)s 个化名",
    "%(num)s pseudonyms": "%(num)s 个化名",
    "%(num)s vouched": "%(num)s 个经过担保",
    "Every count has two figures: all pseudonyms, and those vouched for by the moderators this node "
    "follows on the board. Anyone can make many pseudonyms; the vouched figure depends on whom the "
    "operator of this copy chose to follow, so check it on a node you trust.":
        "每个数字都有两个：全部化名，以及其中经过本节点在这个版块关注的版主担保的化名。"
        "任何人都能创建大量化名；经过担保的数字取决于这份副本的运营者选择关注谁，"
        "请在你信任的节点上核实。",
    "The board holds more than one count reads: these figures are lower bounds (at least).":
        "这个版块的内容超过一次计数能读取的上限：这些数字是下限（至少）。",
    "Company reports · %(board)s · dazibao read-only copy": "公司报告 · %(board)s · dazibao 只读副本",
    "%(company)s · %(board)s · dazibao read-only copy": "%(company)s · %(board)s · dazibao 只读副本",
    "Most vouched pseudonyms first.": "经过担保的化名最多的在前。",
    "No company reports of this board are in this copy.": "这份副本里没有这个版块的公司报告。",
    "%(num)s report": "%(num)s 份报告",
    "%(num)s reports": "%(num)s 份报告",
    "%(num)s corroboration": "%(num)s 条印证",
    "%(num)s corroborations": "%(num)s 条印证",
    "vouched": "经过担保",
    "not vouched": "未经担保",
    "corroborates": "印证",
    "Letters and pledges · %(board)s · dazibao read-only copy": "联名信和门槛承诺 · %(board)s · dazibao 只读副本",
    "Sign-on letters": "联名信",
    "No letters of this board are in this copy.": "这份副本里没有这个版块的联名信。",
    "%(num)s signature": "%(num)s 个签名",
    "%(num)s signatures": "%(num)s 个签名",
    "Threshold pledges": "门槛承诺",
    "No pledges of this board are in this copy.": "这份副本里没有这个版块的门槛承诺。",
    "%(others)s of %(threshold)s others": "其他人 %(others)s / %(threshold)s",
    "Signatures": "签名",
    "On %(date)s, if at least %(threshold)s others pledge.": "在 %(date)s，如果至少有 %(threshold)s 个其他人承诺。",
    "Progress": "进展",
    "Met by vouched pseudonyms.": "已由经过担保的化名达成。",
    "Met, but not yet by vouched pseudonyms.": "已达成，但经过担保的化名还不够。",
    "Not met yet.": "尚未达成。",
    "%(num)s more companies are not listed here; the CSV and JSON list every report.":
        "另有 %(num)s 家公司没有在这里列出；CSV 和 JSON 文件列出了全部报告。",
    "Only the newest %(num)s are listed here; the bundle holds the %(more)s older ones.":
        "这里只列出最新的 %(num)s 个；更早的 %(more)s 个在数据包里。",
}


def callables(lang: str) -> tuple[Callable[..., str], Callable[..., str]]:
    """``gettext`` and ``ngettext`` for the jinja2 i18n extension, in ``lang`` (a LANGUAGES key).

    A message missing from the Chinese table is shown in English rather than failing.
    """
    table: dict[str, str] = ZH if lang == "zh" else {}

    def gettext(message: str, **params: Any) -> str:
        return table.get(message, message)

    def ngettext(singular: str, plural: str, n: int, **params: Any) -> str:
        message = singular if n == 1 else plural
        return table.get(message, message)

    return gettext, ngettext
