"""An ordered set of reconciliation keys with range fingerprints kept incrementally.

docs/protocol.md, "Reconciliation", §2.  A key is ``board UTF-8 || 0x00 ||
created_at_ms (8 bytes, big-endian) || id (32 bytes)`` (:func:`posts.post_key`); keys compare
as plain bytes, so they sort by (board, time, id).  The fingerprint of a set of keys is::

    SHA-256( (sum of the ids as 256-bit little-endian integers) mod 2**256, as 32 bytes
             little-endian || number of keys as 8 bytes little-endian )[:16]

Layout: the keys live in sorted blocks of a few hundred keys (split when they grow past
``_MAX_BLOCK``, merged with a neighbour when they shrink below ``_MIN_BLOCK``).  Each block keeps
the sum of its ids, and checkpoints: the sums of its first 16, 32, 48, ... ids (kept up to date
on insert and delete at the cost of one id addition per checkpoint after the change; rebuilt
after a split or merge when next needed).  Prefix counts and prefix sums over the blocks are
rebuilt lazily, from the first block that changed.  The sum of the ids below any position is
then a binary search, a block prefix, a checkpoint and at most 8 id additions, however large
the index -- never a scan of every key.

Memory is the key bytes themselves plus about one list slot per key and one integer per 16
keys: a million keys of about fifty bytes take around 100 MB.  Pure: no I/O, no clock, no
randomness.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence

from . import limits, sketch
from .errors import LocalProtocolError

__all__ = ["KeyIndex", "ID_BYTES", "FINGERPRINT_BYTES", "MIN_KEY_BYTES", "MAX_KEY_BYTES", "fingerprint_of"]

ID_BYTES = 32
FINGERPRINT_BYTES = 16
#: The shortest key: a one-byte board name, 0x00, 8 bytes of time and the id.
MIN_KEY_BYTES = 1 + 1 + 8 + ID_BYTES
#: The longest key: a full-size board name, 0x00, time and id (also the longest bound).
MAX_KEY_BYTES = limits.MAX_BOUND_BYTES

_MASK = (1 << 256) - 1
_LOAD = 512  # keys per block after a bulk build
_MAX_BLOCK = 2 * _LOAD  # a block that grows past this is split in two
_MIN_BLOCK = _LOAD // 4  # a block that shrinks below this is merged into a neighbour
_STRIDE = 16  # ids between two checkpoints of a block: at most 8 id additions per prefix sum
_CACHED = limits.SKETCH_CACHED_SYMBOLS  # coded symbols kept per block (§5.1)
_SYMBOL_BITS = 8 * sketch.SYMBOL_BYTES
#: Ids added or removed since a block's symbols were last brought up to date: folded in together
#: (one packing of the symbols for all of them) when a sketch needs the block or when this many
#: have gathered, which costs an insert far less than updating the packed symbols each time.
_MAX_DELTA = 64


def fingerprint_of(id_sum: int, count: int) -> bytes:
    """The 16-byte fingerprint of a set whose ids sum to ``id_sum`` (mod 2**256), of ``count`` keys."""
    data = (id_sum & _MASK).to_bytes(32, "little") + count.to_bytes(8, "little")
    return hashlib.sha256(data).digest()[:FINGERPRINT_BYTES]


def _id_sum(keys: Iterable[bytes], _from_bytes: Callable[..., int] = int.from_bytes) -> int:
    # The id is always the last 32 bytes of a key.  A plain loop: about twice as fast as sum()
    # over a generator for the few ids a prefix sum adds, which fingerprints spend most on.
    total = 0
    for k in keys:
        total += _from_bytes(k[-ID_BYTES:], "little")
    return total


def _checkpoints(block: list[bytes]) -> list[int]:
    """[sum of the first 0, 32, 64, ... ids of block] (not reduced mod 2**256)."""
    out = [0]
    total = 0
    for m in range(0, len(block) - _STRIDE + 1, _STRIDE):
        total += _id_sum(block[m : m + _STRIDE])
        out.append(total)
    return out


def _block_cells(block: list[bytes]) -> int:
    """The first _CACHED coded symbols of a block's ids, packed (§5.1)."""
    return sketch.packed(sketch.symbols((k[-ID_BYTES:] for k in block), _CACHED))


def _end_part(block: list[bytes], i: int, j: int) -> tuple[list[bytes], bool]:
    """The keys to compute symbols of for the part [i, j) of a cached block: the part itself,
    or the rest of the block (then True: XOR the block's symbols in) when that is smaller."""
    if 2 * (j - i) <= len(block):
        return block[i:j], False
    return block[:i] + block[j:], True


def _check_key(key: object) -> bytes:
    if type(key) is not bytes:
        raise LocalProtocolError("a key must be bytes")
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES or key[-(ID_BYTES + 9)] != 0:
        raise LocalProtocolError("a key must be board UTF-8, 0x00, 8 bytes of time and a 32-byte id")
    return key


class KeyIndex:
    """An in-memory ordered set of keys answering count, fingerprint and listing of any range.

    Ranges are half-open ``[lo, hi)`` over plain byte order, where ``lo`` and ``hi`` are
    *bounds*: any bytes, typically a prefix of a key; ``hi=None`` means "to the end".
    Positions (``index_of``, ``key_at``, the ``*_at`` methods) count keys from 0 in order.

    Methods that take keys raise LocalProtocolError for something that is not a well-shaped
    key (bytes of 42 to 233 bytes with 0x00 before the time and id).
    """

    __slots__ = ("_blocks", "_firsts", "_sums", "_marks", "_cells", "_delta", "_pre_n", "_pre_s", "_dirty", "_len")

    def __init__(self, keys: Iterable[bytes] = ()) -> None:
        ordered = sorted({_check_key(k) for k in keys})
        self._blocks: list[list[bytes]] = [ordered[i : i + _LOAD] for i in range(0, len(ordered), _LOAD)]
        self._firsts: list[bytes] = [b[0] for b in self._blocks]
        # Checkpoints of each block (None: to be rebuilt when next needed), and block sums.
        marks = [_checkpoints(b) for b in self._blocks]
        self._marks: list[list[int] | None] = list(marks)
        self._sums: list[int] = [
            (m[-1] + _id_sum(b[(len(m) - 1) * _STRIDE :])) & _MASK for b, m in zip(self._blocks, marks, strict=True)
        ]
        # The first _CACHED coded symbols of each block, packed (sketch.packed), kept current.
        self._cells: list[int] = [_block_cells(b) for b in self._blocks]
        # Ids toggled in each block since its symbols were computed (XOR: adding and removing
        # are the same operation), folded in by _fold.
        self._delta: list[list[bytes]] = [[] for _ in self._blocks]
        self._len = len(ordered)
        self._pre_n: list[int] = [0]
        self._pre_s: list[int] = [0]
        self._dirty = 0  # prefix entries past block ``_dirty`` are stale

    # --- the set ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._len

    def __contains__(self, key: object) -> bool:
        if type(key) is not bytes or not self._blocks:
            return False
        j = max(bisect_right(self._firsts, key) - 1, 0)
        blk = self._blocks[j]
        i = bisect_left(blk, key)
        return i < len(blk) and blk[i] == key

    def __iter__(self) -> Iterator[bytes]:
        for blk in self._blocks:
            yield from blk

    def add(self, key: bytes) -> bool:
        """Insert ``key``; False if it was already present.  Raises LocalProtocolError for a bad key."""
        _check_key(key)
        blocks = self._blocks
        if not blocks:
            blocks.append([key])
            self._firsts.append(key)
            self._sums.append(_id_sum((key,)))
            self._marks.append(None)
            self._cells.append(_block_cells([key]))
            self._delta.append([])
            self._len = 1
            self._dirty = 0
            return True
        j = max(bisect_right(self._firsts, key) - 1, 0)
        blk = blocks[j]
        i = bisect_left(blk, key)
        if i < len(blk) and blk[i] == key:
            return False
        blk.insert(i, key)
        if i == 0:
            self._firsts[j] = key
        new = _id_sum((key,))
        self._sums[j] = (self._sums[j] + new) & _MASK
        marks = self._marks[j]
        if marks is not None:
            # Each checkpoint past the new key now counts it and no longer counts the id that
            # was pushed past it; a block that reaches a multiple of the stride gains one.
            for m in range(i // _STRIDE + 1, len(marks)):
                marks[m] += new - _id_sum((blk[m * _STRIDE],))
            if len(blk) % _STRIDE == 0:
                marks.append(marks[-1] + _id_sum(blk[-_STRIDE:]))
        self._toggle(j, key)
        self._len += 1
        if len(blk) > _MAX_BLOCK:
            self._split_block(j)
        self._dirty = min(self._dirty, j)
        return True

    def remove(self, key: bytes) -> bool:
        """Delete ``key``; False if it was not present.  Raises LocalProtocolError for a bad key."""
        _check_key(key)
        if not self._blocks:
            return False
        j = max(bisect_right(self._firsts, key) - 1, 0)
        blk = self._blocks[j]
        i = bisect_left(blk, key)
        if i == len(blk) or blk[i] != key:
            return False
        del blk[i]
        self._len -= 1
        old = _id_sum((key,))
        self._sums[j] = (self._sums[j] - old) & _MASK
        marks = self._marks[j]
        if marks is not None:
            # The mirror image of add().
            del marks[len(blk) // _STRIDE + 1 :]
            for m in range(i // _STRIDE + 1, len(marks)):
                marks[m] += _id_sum((blk[m * _STRIDE - 1],)) - old
        self._toggle(j, key)
        if not blk:
            del self._blocks[j], self._firsts[j], self._sums[j], self._marks[j], self._cells[j], self._delta[j]
        else:
            if i == 0:
                self._firsts[j] = blk[0]
            if len(blk) < _MIN_BLOCK and len(self._blocks) > 1:
                j = self._merge_block(j)
        self._dirty = min(self._dirty, max(j, 0))
        return True

    def _toggle(self, j: int, key: bytes) -> None:
        delta = self._delta[j]
        delta.append(key[-ID_BYTES:])
        if len(delta) >= _MAX_DELTA:
            self._fold(j)

    def _fold(self, j: int) -> None:
        """Bring block ``j``'s cached symbols up to date with the ids toggled since."""
        delta = self._delta[j]
        if delta:
            self._cells[j] ^= sketch.packed(sketch.symbols(delta, _CACHED))
            delta.clear()

    def _split_block(self, j: int) -> None:
        blk = self._blocks[j]
        half = len(blk) // 2
        left, right = blk[:half], blk[half:]
        right_sum = _id_sum(right) & _MASK
        self._blocks[j : j + 1] = [left, right]
        self._firsts[j : j + 1] = [left[0], right[0]]
        self._sums[j : j + 1] = [(self._sums[j] - right_sum) & _MASK, right_sum]
        self._marks[j : j + 1] = [None, None]
        self._fold(j)
        left_cells = _block_cells(left)
        self._cells[j : j + 1] = [left_cells, self._cells[j] ^ left_cells]
        self._delta[j : j + 1] = [[], []]

    def _merge_block(self, j: int) -> int:
        # Merge block j into its right neighbour (or the left one for the last block); return
        # the index of the first block that changed.
        if j + 1 == len(self._blocks):
            j -= 1
        merged = self._blocks[j] + self._blocks[j + 1]
        total = (self._sums[j] + self._sums[j + 1]) & _MASK
        self._blocks[j : j + 2] = [merged]
        self._firsts[j : j + 2] = [merged[0]]
        self._sums[j : j + 2] = [total]
        self._marks[j : j + 2] = [None]
        self._fold(j)
        self._fold(j + 1)
        self._cells[j : j + 2] = [self._cells[j] ^ self._cells[j + 1]]
        self._delta[j : j + 2] = [[]]
        if len(merged) > _MAX_BLOCK:
            self._split_block(j)
        return j

    # --- prefix counts and sums ------------------------------------------------------------

    def _refresh(self) -> None:
        nb = len(self._blocks)
        d = self._dirty
        if d >= nb and len(self._pre_n) == nb + 1:
            return
        pre_n, pre_s = self._pre_n, self._pre_s
        del pre_n[d + 1 :], pre_s[d + 1 :]
        n, s = pre_n[d], pre_s[d]
        for blk, bsum in zip(self._blocks[d:], self._sums[d:], strict=True):
            n += len(blk)
            s = (s + bsum) & _MASK
            pre_n.append(n)
            pre_s.append(s)
        self._dirty = nb

    def _locate(self, bound: bytes | None) -> tuple[int, int]:
        """(block, offset) of the first key >= bound; (number of blocks, 0) at the end."""
        if bound is None:
            return len(self._blocks), 0
        j = bisect_right(self._firsts, bound) - 1
        if j < 0:
            return 0, 0
        blk = self._blocks[j]
        i = bisect_left(blk, bound)
        if i == len(blk):
            return j + 1, 0
        return j, i

    def _block_of(self, pos: int) -> tuple[int, int]:
        """(block, offset) of position ``pos`` (0 <= pos <= len); the prefix must be fresh."""
        j = bisect_right(self._pre_n, pos) - 1
        if j >= len(self._blocks):
            return len(self._blocks), 0
        return j, pos - self._pre_n[j]

    def _prefix_sum(self, j: int, i: int) -> int:
        """Sum of the ids before offset ``i`` of block ``j`` (mod 2**256); prefix must be fresh."""
        if i == 0:
            return self._pre_s[j]
        blk = self._blocks[j]
        marks = self._marks[j]
        if marks is None:
            marks = self._marks[j] = _checkpoints(blk)
        # Start from the nearest checkpoint (or the block's end) and add at most 8 ids.
        m, r = divmod(i, _STRIDE)
        if r <= _STRIDE // 2 or m + 1 >= len(marks):
            if m + 1 >= len(marks) and len(blk) - i < r:
                part = self._sums[j] - _id_sum(blk[i:])
            else:
                part = marks[m] + _id_sum(blk[m * _STRIDE : i])
        else:
            part = marks[m + 1] - _id_sum(blk[i : (m + 1) * _STRIDE])
        return (self._pre_s[j] + part) & _MASK

    # --- positions -------------------------------------------------------------------------

    def index_of(self, bound: bytes | None) -> int:
        """Number of keys below ``bound`` (all keys when ``bound`` is None)."""
        self._refresh()
        j, i = self._locate(bound)
        return self._pre_n[j] + i

    def key_at(self, pos: int) -> bytes:
        """The key at position ``pos`` (0-based).  Raises IndexError outside [0, len)."""
        if not 0 <= pos < self._len:
            raise IndexError("key position out of range")
        self._refresh()
        j, i = self._block_of(pos)
        return self._blocks[j][i]

    def fingerprints_at(self, positions: Sequence[int]) -> list[bytes]:
        """Fingerprints of the consecutive slices [p0, p1), [p1, p2), ... of positions.

        ``positions`` must be non-decreasing within [0, len]; raises IndexError otherwise.
        """
        self._refresh()
        sums = []
        for pos in positions:
            if not 0 <= pos <= self._len:
                raise IndexError("key position out of range")
            sums.append(self._prefix_sum(*self._block_of(pos)))
        out = []
        # Consecutive pairs: the shifted sequences are one shorter, and shorter wins.
        for a, b, sa, sb in zip(positions, positions[1:], sums, sums[1:], strict=False):
            if b < a:
                raise IndexError("positions must not decrease")
            out.append(fingerprint_of(sb - sa, b - a))
        return out

    def fingerprint_at(self, start: int, stop: int) -> bytes:
        """Fingerprint of the keys at positions [start, stop)."""
        return self.fingerprints_at((start, stop))[0]

    def keys_at(self, start: int, stop: int) -> Iterator[bytes]:
        """The keys at positions [start, stop), in order."""
        self._refresh()
        start = max(start, 0)
        stop = min(stop, self._len)
        if start >= stop:
            return
        j, i = self._block_of(start)
        left = stop - start
        while left > 0:
            blk = self._blocks[j]
            chunk = blk[i : i + left]
            yield from chunk
            left -= len(chunk)
            j, i = j + 1, 0

    def ids_at(self, start: int, stop: int) -> list[bytes]:
        """The ids (last 32 bytes) of the keys at positions [start, stop), in key order."""
        return [k[-ID_BYTES:] for k in self.keys_at(start, stop)]

    # --- sketches (§5.1) -------------------------------------------------------------------

    def sum_at(self, start: int, stop: int) -> int:
        """The sum of the ids at positions [start, stop), mod 2**256 (§2.2).  Raises IndexError
        for positions outside [0, len]."""
        if not 0 <= start <= stop <= self._len:
            raise IndexError("key position out of range")
        self._refresh()
        return (self._prefix_sum(*self._block_of(stop)) - self._prefix_sum(*self._block_of(start))) & _MASK

    def _sketch_plan(self, start: int, stop: int) -> tuple[list[bytes], list[int]]:
        """For the keys at positions [start, stop): the keys whose symbols to compute and the
        blocks whose cached symbols to XOR in (the end blocks through their smaller side)."""
        self._refresh()
        j0, i0 = self._block_of(start)
        j1, i1 = self._block_of(stop)
        blocks = self._blocks
        if j0 == j1:
            loose, whole = _end_part(blocks[j0], i0, i1)
            return loose, [j0] if whole else []
        loose = []
        cached = list(range(j0 + 1, j1))
        if i0:
            part, whole = _end_part(blocks[j0], i0, len(blocks[j0]))
        else:
            part, whole = [], True
        loose += part
        if whole:
            cached.append(j0)
        if j1 < len(blocks) and i1:
            part, whole = _end_part(blocks[j1], 0, i1)
            loose += part
            if whole:
                cached.append(j1)
        return loose, cached

    def sketch_work(self, start: int, stop: int, end: int) -> int:
        """How many keys' coded symbols :meth:`sketch_at` computes for the keys at positions
        [start, stop) and symbols below ``end``: at most half of each of the range's two end
        blocks (the blocks between have their symbols cached, but for the ids added or removed
        since), or every key of the range when ``end`` is past the cached symbols."""
        if stop <= start:
            return 0
        if end > _CACHED:
            return stop - start
        loose, cached = self._sketch_plan(start, stop)
        return len(loose) + sum(len(self._delta[j]) for j in cached)

    def sketch_at(self, start: int, stop: int, first: int, count: int) -> bytes:
        """Coded symbols ``first`` to ``first + count - 1`` of the ids at positions [start, stop),
        in their wire form (``count`` times sketch.SYMBOL_BYTES bytes).  The caller bounds the
        work first (:meth:`sketch_work`).  Raises IndexError for positions outside [0, len]."""
        if not 0 <= start <= self._len or not 0 <= stop <= self._len:
            raise IndexError("key position out of range")
        end = first + count
        if stop <= start:
            return bytes(count * sketch.SYMBOL_BYTES)
        if end > _CACHED:
            return sketch.encode(self.ids_at(start, stop), first, count)
        loose, cached = self._sketch_plan(start, stop)
        total = sketch.packed(sketch.symbols((k[-ID_BYTES:] for k in loose), end))
        cells = self._cells
        for j in cached:
            self._fold(j)
            total ^= cells[j]
        total &= (1 << (_SYMBOL_BITS * end)) - 1
        return (total >> (_SYMBOL_BITS * first)).to_bytes(count * sketch.SYMBOL_BYTES, "little")

    # --- ranges of bounds ------------------------------------------------------------------

    def count(self, lo: bytes, hi: bytes | None) -> int:
        """Number of keys k with lo <= k < hi (hi None: to the end)."""
        return max(self.index_of(hi) - self.index_of(lo), 0)

    def fingerprint(self, lo: bytes, hi: bytes | None) -> bytes:
        """The 16-byte fingerprint of the keys k with lo <= k < hi (hi None: to the end)."""
        a = self.index_of(lo)
        return self.fingerprint_at(a, max(a, self.index_of(hi)))

    def iter_range(self, lo: bytes, hi: bytes | None) -> Iterator[bytes]:
        """The keys k with lo <= k < hi (hi None: to the end), in order."""
        return self.keys_at(self.index_of(lo), self.index_of(hi))

    def ids(self, lo: bytes, hi: bytes | None) -> list[bytes]:
        """The ids of the keys k with lo <= k < hi (hi None: to the end), in key order."""
        return self.ids_at(self.index_of(lo), self.index_of(hi))
