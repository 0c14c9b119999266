# rawzip.py -- owns writing zip files byte by byte for the hostile archive
# kinds: entries whose headers may lie (sizes, flags, method), raw-byte names,
# zip64 records, and deflate streams of zeros built from one repeated block
# (a 20 GiB entry is made in well under a second, ~1 KiB per MiB), with the
# CRC of N zero bytes computed by CRC combination instead of by hashing them.
import shutil
import struct
import tempfile
import zlib

UNIT = 1 << 20  # uncompressed bytes per repeated deflate block


def _gf2_times(mat, vec):
    s, i = 0, 0
    while vec:
        if vec & 1:
            s ^= mat[i]
        vec >>= 1
        i += 1
    return s


def _gf2_square(mat):
    return [_gf2_times(mat, mat[n]) for n in range(32)]


def crc32_combine(crc1, crc2, len2):
    """zlib's crc32_combine: CRC of A||B from crc(A), crc(B) and len(B)."""
    if len2 <= 0:
        return crc1
    odd = [0xEDB88320] + [1 << (n - 1) for n in range(1, 32)]
    even = _gf2_square(odd)
    odd = _gf2_square(even)
    while True:
        even = _gf2_square(odd)
        if len2 & 1:
            crc1 = _gf2_times(even, crc1)
        len2 >>= 1
        if not len2:
            break
        odd = _gf2_square(even)
        if len2 & 1:
            crc1 = _gf2_times(odd, crc1)
        len2 >>= 1
        if not len2:
            break
    return crc1 ^ crc2


def crc32_zeros(n):
    """CRC-32 of n zero bytes, in O(log n)."""
    crc, unit_crc, unit = 0, zlib.crc32(b"\0" * 4096), 4096
    done = 0
    # binary decomposition of n in multiples of 4096, the rest by hashing
    blocks, rest = divmod(n, 4096)
    pow_crc, pow_len = unit_crc, unit
    while blocks:
        if blocks & 1:
            crc = crc32_combine(crc, pow_crc, pow_len)
            done += pow_len
        blocks >>= 1
        if blocks:
            pow_crc = crc32_combine(pow_crc, pow_crc, pow_len)
            pow_len *= 2
    return zlib.crc32(b"\0" * rest, crc)


def zero_deflate_unit():
    """-> (unit, end): raw deflate bytes such that unit*k + end inflates to k*UNIT
    zero bytes.  A full flush after each block makes every block independent
    of the ones before it, hence byte-identical."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15, 9)
    a = c.compress(b"\0" * UNIT) + c.flush(zlib.Z_FULL_FLUSH)
    b = c.compress(b"\0" * UNIT) + c.flush(zlib.Z_FULL_FLUSH)
    end = c.flush(zlib.Z_FINISH)
    assert a == b, "zlib's full-flush blocks of zeros differ"
    d = zlib.decompressobj(-15)
    assert d.decompress(a + a + end) == b"\0" * (2 * UNIT) and d.eof
    return a, end


def _dos_time(dt):
    y, mo, d, h, mi, s = dt
    return (h << 11) | (mi << 5) | (s // 2), ((y - 1980) << 9) | (mo << 5) | d


class Writer:
    """Writes entries straight to a file object.  Each add() takes what the
    headers say (which may lie) and the bytes that follow."""

    def __init__(self, f, dt):
        self.f = f
        self.dtime, self.ddate = _dos_time(dt)
        self.central = tempfile.TemporaryFile()  # 1,000,000 records stay off the heap
        self.count = 0
        self.pos = 0

    def _w(self, b):
        self.f.write(b)
        self.pos += len(b)

    def add(self, name, data=b"", method=0, crc=None, usize=None, csize=None, flags=None,
            mode=0o100644, chunks=None, zip64=False):
        """name: bytes (UTF-8 flag set when it decodes as UTF-8).  data: the stored
        bytes, or chunks: an iterable of them (then crc/usize/csize are required)."""
        if flags is None:
            try:
                name.decode("utf-8")
                flags = 0x800
            except UnicodeDecodeError:
                flags = 0
        if chunks is None:
            chunks = [data]
            if usize is None:
                usize = len(data) if method == 0 else None
            csize = len(data) if csize is None else csize
            if crc is None:
                crc = zlib.crc32(data)
        off = self.pos
        big = zip64 or usize > 0xFFFFFFFE or csize > 0xFFFFFFFE
        ver = 45 if big else 20
        extra = struct.pack("<HHQQ", 1, 16, usize, csize) if big else b""
        self._w(struct.pack("<IHHHHHIIIHH", 0x04034B50, ver, flags, method, self.dtime,
                            self.ddate, crc, 0xFFFFFFFF if big else csize,
                            0xFFFFFFFF if big else usize, len(name), len(extra)))
        self._w(name)
        self._w(extra)
        for c in chunks:
            self._w(c)
        cextra = b""
        if big or off > 0xFFFFFFFE:
            vals = [usize, csize] + ([off] if off > 0xFFFFFFFE else [])
            cextra = struct.pack("<HH", 1, 8 * len(vals)) + struct.pack("<%dQ" % len(vals), *vals)
        self.central.write(
            struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, (3 << 8) | ver, ver, flags, method,
                        self.dtime, self.ddate, crc, 0xFFFFFFFF if big else csize,
                        0xFFFFFFFF if big else usize, len(name), len(cextra), 0, 0, 0,
                        (mode << 16) & 0xFFFFFFFF, min(off, 0xFFFFFFFF))
            + name + cextra)
        self.count += 1

    def add_zeros(self, name, size):
        """A deflated entry of `size` zero bytes (size a multiple of UNIT)."""
        assert size % UNIT == 0
        unit, end = zero_deflate_unit()
        k = size // UNIT
        self.add(name, method=8, crc=crc32_zeros(size), usize=size,
                 csize=k * len(unit) + len(end),
                 chunks=_repeat(unit, k, end), zip64=size > 0xFFFFFFFE)

    def close(self):
        cd_off = self.pos
        cd_size = self.central.tell()
        self.central.seek(0)
        shutil.copyfileobj(self.central, self.f, 1 << 20)
        self.central.close()
        self.pos += cd_size
        n = self.count
        if n > 0xFFFE or cd_off > 0xFFFFFFFE or cd_size > 0xFFFFFFFE:
            z64 = self.pos
            self._w(struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, (3 << 8) | 45, 45, 0, 0, n, n,
                                cd_size, cd_off))
            self._w(struct.pack("<IIQI", 0x07064B50, 0, z64, 1))
            self._w(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF,
                                0xFFFFFFFF, 0))
        else:
            self._w(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n, n, cd_size, cd_off, 0))


def _repeat(unit, k, end):
    # write in ~1 MiB pieces
    per = max(1, UNIT // len(unit))
    piece = unit * per
    full, rest = divmod(k, per)
    for _ in range(full):
        yield piece
    yield unit * rest
    yield end
