#!/usr/bin/python3
"""zip2gz.py ZIP ENTRY OUT.gz -- wrap one deflate entry of a zip as a gzip file.

The raw deflate bytes of ENTRY are copied out of the zip unchanged (found with
zipfile's header offset and the local header's name/extra lengths), behind a
10-byte gzip header and followed by the entry's CRC-32 and ISIZE, so that
`igzip -dc OUT.gz` inflates exactly the stream hcexportfs has to inflate.
Standard library only.
"""
import struct
import sys
import zipfile

GZIP_HEADER = b"\x1f\x8b\x08\x00" + b"\x00\x00\x00\x00" + b"\x00\x03"  # deflate, no flags, mtime 0, unix


def zip_entry_to_gz(zip_path, entry, gz_path, bufsize=1 << 20):
    """Write gz_path; returns (compressed bytes copied, uncompressed size)."""
    with zipfile.ZipFile(zip_path) as zf:
        zi = zf.getinfo(entry)
    if zi.compress_type != zipfile.ZIP_DEFLATED:
        raise ValueError("%s: entry %s is not deflated (method %d)" % (zip_path, entry, zi.compress_type))
    with open(zip_path, "rb") as f, open(gz_path + ".tmp", "wb") as out:
        f.seek(zi.header_offset)
        hdr = f.read(30)
        sig, _ver, _flag, _meth, _t, _d, _crc, _cs, _us, nlen, xlen = struct.unpack("<IHHHHHIIIHH", hdr)
        if sig != 0x04034B50:
            raise ValueError("%s: no local header at %d" % (zip_path, zi.header_offset))
        f.seek(zi.header_offset + 30 + nlen + xlen)
        out.write(GZIP_HEADER)
        left = zi.compress_size
        while left:
            buf = f.read(min(bufsize, left))
            if not buf:
                raise ValueError("%s: truncated entry %s" % (zip_path, entry))
            out.write(buf)
            left -= len(buf)
        out.write(struct.pack("<II", zi.CRC, zi.file_size & 0xFFFFFFFF))
    import os
    os.replace(gz_path + ".tmp", gz_path)
    return zi.compress_size, zi.file_size


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    c, u = zip_entry_to_gz(*sys.argv[1:])
    print("%s: %d deflate bytes, %d uncompressed" % (sys.argv[3], c, u))
