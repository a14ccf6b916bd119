"""Uploads: only real images are kept, names are tamed, zips cannot escape or explode."""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.errors import UploadRejected
from core.files import safe_file_name, safe_name, sniff_kind
from core.intake import save_uploads

MB = 1_000_000


def img_bytes(fmt: str = "PNG", size: int = 16, seed: int = 0) -> bytes:
    a = np.random.default_rng(seed).integers(0, 255, (size, size), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format=fmt)
    return buf.getvalue()


def make_zip(
    entries: list[tuple[str | zipfile.ZipInfo, bytes]], method=zipfile.ZIP_DEFLATED
) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=method) as zf:
        for name, data in entries:
            zf.writestr(name, data)
    return buf.getvalue()


def all_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


@pytest.fixture
def dest(tmp_path) -> Path:
    return tmp_path / "up"


# ---------------------------------------------------------------- plain files


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("a.png", "PNG"),
        ("b.tif", "TIFF"),
        ("c.TIFF", "TIFF"),
        ("d.jpg", "JPEG"),
        ("e.jpeg", "JPEG"),
        ("f.bmp", "BMP"),
    ],
)
def test_plain_images_saved(dest, name, fmt):
    data = img_bytes(fmt)
    saved, rejected = save_uploads([(name, data)], dest, max_bytes=MB)
    assert rejected == [] and saved == [dest.resolve() / name]
    assert saved[0].read_bytes() == data


def test_file_objects_and_unseekable_streams(dest):
    class Pipe(io.RawIOBase):
        def __init__(self, data: bytes):
            self._b = io.BytesIO(data)

        def readable(self):
            return True

        def seekable(self):
            return False

        def readinto(self, b):
            n = self._b.readinto(b)
            return n

    data = img_bytes()
    saved, rejected = save_uploads(
        [("a.png", io.BytesIO(data)), ("b.png", io.BufferedReader(Pipe(data)))], dest, max_bytes=MB
    )
    assert rejected == [] and [p.read_bytes() for p in saved] == [data, data]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("../../etc/evil.png", "evil.png"),
        ("C:\\fakepath\\scan.png", "scan.png"),
        (".hidden.png", "hidden.png"),
        ("...png", "upload.png"),
        ("a\x00b\nc\td.png", "a_b_c_d.png"),
        ("试料 µm Ünïcode.png", "试料 µm Ünïcode.png"),
        ("bad\u202egnp.png", "bad_gnp.png"),  # bidi override used to disguise names
        ("con.png", "_con.png"),
        ('w<i>n:d*o?w"s|.png', "w_i_n_d_o_w_s_.png"),
        ("x" * 300 + ".png", "x" * 196 + ".png"),
    ],
)
def test_names_are_sanitised(dest, tmp_path, name, expected):
    saved, rejected = save_uploads([(name, img_bytes())], dest, max_bytes=MB)
    assert rejected == [] and [p.name for p in saved] == [expected]
    assert all_files(tmp_path) == [f"up/{expected}"]


def test_safe_name_basics():
    assert safe_name("..") == "file"
    assert safe_file_name("...png") == "upload.png" and safe_file_name(".x.tif") == "x.tif"
    assert safe_file_name("a\u202e.png") == "a_.png"
    assert safe_name("a/b\\c") == "a_b_c"
    assert safe_name(" .x. ") == "x"
    assert len(safe_name("é" * 300 + ".tif").encode()) <= 200


def test_collisions_get_a_suffix_and_nothing_is_overwritten(dest):
    dest.mkdir()
    (dest / "a.png").write_bytes(b"old")
    data = [img_bytes(seed=i) for i in range(3)]
    saved, rejected = save_uploads(
        [("a.png", d) for d in data] + [("A.png", data[0])], dest, max_bytes=MB
    )
    assert rejected == []
    assert [p.name for p in saved] == ["a_1.png", "a_2.png", "a_3.png", "A.png"]
    assert (dest / "a.png").read_bytes() == b"old"
    assert [p.read_bytes() for p in saved[:3]] == data


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("notes.png", b"hello, I am text pretending to be an image", "not a PNG image"),
        ("scan.tif", img_bytes("PNG"), "PNG image but the name says .tif"),
        ("evil.exe", b"MZ\x90\x00", "not an image type (.exe)"),
        ("noext", img_bytes(), "no extension"),
        ("empty.png", b"", "not a PNG image"),
        ("shell.php.png", b"<?php system($_GET['c']); ?>", "not a PNG image"),
    ],
)
def test_non_images_rejected(dest, name, data, reason):
    saved, rejected = save_uploads([(name, data)], dest, max_bytes=MB)
    assert saved == [] and len(rejected) == 1 and rejected[0][0] == name
    assert reason in rejected[0][1]
    assert all_files(dest) == []


def test_oversize_rejected_before_writing(dest):
    big = img_bytes(size=200)
    limit = len(big) - 1

    class Unseekable(io.BytesIO):
        def seekable(self):
            return False

    saved, rejected = save_uploads(
        [
            ("a.png", big),
            ("b.png", io.BytesIO(big)),
            ("c.png", Unseekable(big)),
            ("d.zip", make_zip([("x.png", big)], zipfile.ZIP_STORED)),
            ("ok.png", img_bytes()),
        ],
        dest,
        max_bytes=limit,
    )
    assert [p.name for p in saved] == ["ok.png"]
    assert [n for n, _ in rejected] == ["a.png", "b.png", "c.png", "d.zip"]
    assert all("over the upload limit" in r for _, r in rejected)
    assert all_files(dest) == ["ok.png"]


def test_max_pixels(dest):
    saved, rejected = save_uploads(
        [
            ("small.png", img_bytes(size=16)),
            ("big.png", img_bytes(size=64)),
            ("big.tif", img_bytes("TIFF", size=64)),
        ],
        dest,
        max_bytes=MB,
        max_pixels=1000,
    )
    assert [p.name for p in saved] == ["small.png"]
    assert [n for n, _ in rejected] == ["big.png", "big.tif"]
    assert all("4,096 pixels is over the limit of 1,000" in r for _, r in rejected)
    assert all_files(dest) == ["small.png"]


def test_file_count_limit(dest):
    saved, rejected = save_uploads(
        [(f"{i}.png", img_bytes(seed=i)) for i in range(4)], dest, max_bytes=MB, max_files=3
    )
    assert len(saved) == 3 and [n for n, _ in rejected] == ["3.png"]


def test_misuse_raises(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UploadRejected, match="not a folder"):
        save_uploads([], tmp_path / "file", max_bytes=MB)
    with pytest.raises(UploadRejected, match="max_bytes"):
        save_uploads([], tmp_path / "d", max_bytes=0)


# ---------------------------------------------------------------- zips


def test_zip_keeps_nested_folders_for_labels_from_folders(dest, tmp_path):
    data = make_zip(
        [
            ("fibres/", b""),
            ("fibres/a.png", img_bytes(seed=1)),
            ("films/run 2/b.tif", img_bytes("TIFF", seed=2)),
            ("./particles/c.png", img_bytes(seed=3)),
            ("__MACOSX/fibres/._a.png", b"\x00\x05\x16\x07junk"),
            ("fibres/.DS_Store", b"junk"),
            (".hidden/d.png", img_bytes(seed=4)),
            ("readme.txt", b"hello"),
        ]
    )
    saved, rejected = save_uploads([("set.zip", data)], dest, max_bytes=MB)
    assert all_files(dest) == [
        "fibres/a.png",
        "films/run 2/b.tif",
        "hidden/d.png",
        "particles/c.png",
    ]
    assert len(saved) == 4
    assert (
        rejected == [("set.zip:readme.txt", rejected[0][1])]
        and "not an image type" in rejected[0][1]
    )

    from core.intake import ingest
    from core.store import open_db

    db = open_db(tmp_path / "t.db")
    rep = ingest(db, [dest], labels_from_folders=True, workers=1)
    assert rep.added == 4 and rep.labelled == 4
    labels = dict(
        db.execute(
            "SELECT i.name, c.label FROM images i JOIN current_labels c ON c.image_id = i.id"
        )
    )
    assert labels == {"a.png": "fibres", "b.tif": "run 2", "c.png": "particles", "d.png": "hidden"}


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ("../evil.png", "'..'"),
        ("ok/../../evil.png", "'..'"),
        ("/abs/evil.png", "absolute path"),
        ("C:/evil.png", "drive letter"),
        ("c:evil.png", "drive letter"),
        ("..\\evil.png", "backslash"),
        ("dir\\evil.png", "backslash"),
    ],
)
def test_zip_slip_refused(dest, tmp_path, entry, reason):
    data = make_zip([(entry, img_bytes()), ("good.png", img_bytes(seed=1))])
    saved, rejected = save_uploads([("x.zip", data)], dest, max_bytes=MB)
    assert [p.name for p in saved] == ["good.png"]
    assert len(rejected) == 1 and rejected[0][0] == f"x.zip:{entry}" and reason in rejected[0][1]
    assert all_files(tmp_path) == ["up/good.png"]


def test_zip_symlink_and_special_entries_refused(dest, tmp_path):
    link = zipfile.ZipInfo("link.png")
    link.external_attr = 0o120777 << 16
    fifo = zipfile.ZipInfo("fifo.png")
    fifo.external_attr = 0o010644 << 16
    data = make_zip([(link, b"/etc/passwd"), (fifo, img_bytes()), ("real.png", img_bytes())])
    saved, rejected = save_uploads([("x.zip", data)], dest, max_bytes=MB)
    assert [p.name for p in saved] == ["real.png"]
    assert dict(rejected) == {
        "x.zip:link.png": "refused: symbolic link in the archive",
        "x.zip:fifo.png": "refused: not a regular file (device, pipe or socket)",
    }
    assert not any(p.is_symlink() for p in tmp_path.rglob("*"))


def _patch_entry(
    data: bytes, index: int, *, flags: int | None = None, usize: int | None = None
) -> bytes:
    """Rewrite the flag bits / uncompressed size of entry ``index`` in both of its headers."""
    b = bytearray(data)
    for sig, flag_off, size_off in ((b"PK\x03\x04", 6, 22), (b"PK\x01\x02", 8, 24)):
        pos = -1
        for _ in range(index + 1):
            pos = b.index(sig, pos + 1)
        if flags is not None:
            b[pos + flag_off] |= flags
        if usize is not None:
            b[pos + size_off : pos + size_off + 4] = struct.pack("<I", usize)
    return bytes(b)


def test_zip_encrypted_entry_refused(dest):
    data = _patch_entry(
        make_zip([("secret.png", img_bytes()), ("open.png", img_bytes(seed=1))]), 0, flags=0x1
    )
    saved, rejected = save_uploads([("x.zip", data)], dest, max_bytes=MB)
    assert [p.name for p in saved] == ["open.png"]
    assert rejected == [("x.zip:secret.png", "refused: encrypted entry")]


def test_zip_bomb_by_declared_size(dest):
    bomb = make_zip([("bomb.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 20 * MB)])
    assert len(bomb) < 50_000
    saved, rejected = save_uploads([("bomb.zip", bomb)], dest, max_bytes=MB)
    assert saved == [] and len(rejected) == 1 and "zip-bomb guard" in rejected[0][1]
    saved, rejected = save_uploads([("bomb.zip", bomb)], dest, max_bytes=MB, max_total_bytes=1000)
    assert saved == [] and "zip-bomb guard" in rejected[0][1]
    assert all_files(dest) == []


def test_zip_bomb_lying_about_its_size(dest):
    honest = make_zip([("a.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 3 * MB), ("b.png", img_bytes())])
    liar = _patch_entry(honest, 0, usize=100)  # declares 100 bytes, holds 3 MB
    saved, rejected = save_uploads([("liar.zip", liar)], dest, max_bytes=MB, max_total_bytes=MB)
    assert [p.name for p in saved] == ["b.png"]
    assert rejected[0][0] == "liar.zip:a.png"
    assert all_files(dest) == ["b.png"]
    assert (dest / "b.png").stat().st_size < 1000


def test_zip_bytes_are_counted_while_extracting(dest, monkeypatch):
    """Even if the zip reader trusted a lying header, the byte count stops the entry."""
    data = make_zip([("a.png", img_bytes(seed=1)), ("b.png", img_bytes(seed=2))])
    real_open = zipfile.ZipFile.open

    def lying_open(self, name, *a, **k):
        if getattr(name, "filename", name) == "a.png":
            return io.BytesIO(b"\x89PNG\r\n\x1a\n" + b"\0" * (2 * MB))
        return real_open(self, name, *a, **k)

    monkeypatch.setattr(zipfile.ZipFile, "open", lying_open)
    saved, rejected = save_uploads([("x.zip", data)], dest, max_bytes=MB)
    assert [p.name for p in saved] == ["b.png"]
    assert rejected == [("x.zip:a.png", "refused: more data than the archive declares (zip bomb)")]
    assert all_files(dest) == ["b.png"]


def test_zip_entry_count_limit(dest):
    data = make_zip([(f"{i}.png", img_bytes(seed=i)) for i in range(5)])
    saved, rejected = save_uploads([("many.zip", data)], dest, max_bytes=MB, max_files=3)
    assert saved == [] and rejected == [("many.zip", "5 entries in the archive; the limit is 3")]


@pytest.mark.parametrize("data", [b"PK\x03\x04 this is not really a zip", b"", img_bytes()])
def test_corrupt_zip_is_one_clear_rejection(dest, data):
    saved, rejected = save_uploads([("broken.zip", data)], dest, max_bytes=MB)
    assert saved == [] and len(rejected) == 1
    assert rejected[0][0] == "broken.zip" and rejected[0][1].startswith(
        "not a readable zip archive"
    )


def test_zip_corrupt_entry_leaves_no_partial_file(dest):
    good = img_bytes(seed=1)
    data = bytearray(
        make_zip([("bad.png", img_bytes(size=64)), ("good.png", good)], zipfile.ZIP_STORED)
    )
    data[200] ^= 0xFF  # inside bad.png's data: CRC mismatch on reading
    saved, rejected = save_uploads([("x.zip", bytes(data))], dest, max_bytes=MB)
    assert [p.name for p in saved] == ["good.png"]
    assert rejected[0][0] == "x.zip:bad.png" and "corrupt" in rejected[0][1]
    assert all_files(dest) == ["good.png"]


def test_zip_disguised_and_odd_entries(dest):
    data = make_zip(
        [
            ("fake.tif", b"#!/bin/sh\nrm -rf /\n"),
            ("con/aux.png", img_bytes()),
            ("试料/µm 1.png", img_bytes(seed=2)),
            ("x.png", img_bytes(seed=3)),
            ("X.png", img_bytes(seed=4)),
        ]
    )
    dest.mkdir()
    (dest / "x.png").write_bytes(b"existing")
    saved, rejected = save_uploads([("x.zip", data)], dest, max_bytes=MB)
    assert rejected[0][0] == "x.zip:fake.tif" and "not a TIFF image" in rejected[0][1]
    assert len(saved) == 4 and len(rejected) == 1
    assert all_files(dest) == ["X.png", "_con/_aux.png", "x.png", "x_1.png", "试料/µm 1.png"]
    assert (dest / "x.png").read_bytes() == b"existing"


def test_sniff_kind():
    assert sniff_kind(b"II*\x00rest") == "TIFF" and sniff_kind(b"MM\x00+") == "TIFF"
    assert sniff_kind(img_bytes("JPEG")) == "JPEG" and sniff_kind(img_bytes("BMP")) == "BMP"
    assert sniff_kind(b"BM..") is None, "two bytes do not make a BMP"
    assert sniff_kind(b"GIF89a") is None


# ---------------------------------------------------------------- issue 18, finding 4


def test_zip_amplification_by_ratio_is_refused(dest):
    """The attack: a 1 MB zip wrote a 1 GiB file. Here 100 KB of zeros expands ~1000 times."""
    bomb = make_zip([("flat.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 3 * MB), ("ok.png", img_bytes())])
    assert len(bomb) < 20_000
    saved, rejected = save_uploads([("x.zip", bomb)], dest, max_bytes=MB, max_total_bytes=10 * MB)
    assert [p.name for p in saved] == ["ok.png"]
    assert rejected[0][0] == "x.zip:flat.png" and "zip-bomb guard" in rejected[0][1]
    assert "expands" in rejected[0][1]
    assert all_files(dest) == ["ok.png"]


def test_several_archives_share_one_budget_per_upload(dest):
    noise = [(f"n{i}.png", img_bytes(size=300, seed=i)) for i in range(3)]  # ~90 KB each
    one = make_zip(noise, method=zipfile.ZIP_STORED)
    per = sum(len(b) for _, b in noise)
    saved, rejected = save_uploads([("a.zip", one), ("b.zip", one), ("c.zip", one)], dest,
                                   max_bytes=MB, max_total_bytes=int(per * 2.5))
    assert len(saved) == 6, (len(saved), rejected)  # two archives whole; the third refused
    assert sum(p.stat().st_size for p in saved) <= per * 2.5
    assert [n for n, _ in rejected] == ["c.zip"] and "this upload may write" in rejected[0][1]


def test_the_disk_keeps_headroom_for_the_database(dest):
    import shutil

    free = shutil.disk_usage(dest.parent).free
    data = make_zip([("a.png", img_bytes())])
    saved, rejected = save_uploads([("x.zip", data), ("p.png", img_bytes(seed=3))], dest,
                                   max_bytes=MB, reserve_bytes=free)
    assert saved == [] and len(rejected) == 2
    assert all("kept free for the database" in r for _, r in rejected), rejected
    assert not dest.exists(), "the empty upload folder was left behind"


# ---------------------------------------------------------------- issue 18, finding 15


def _png_header_only(w: int, h: int) -> bytes:
    """A PNG whose header declares w x h (its pixels are not there: judged at ingest)."""
    import struct as st
    import zlib as z

    def chunk(kind: bytes, data: bytes) -> bytes:
        return st.pack(">I", len(data)) + kind + data + st.pack(">I", z.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", st.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", z.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def test_png_pixel_limit_is_ours_not_pillows(dest):
    big = _png_header_only(15000, 13000)  # 195 Mpx: under our 200 M, over Pillow's 179 M bomb limit
    saved, rejected = save_uploads([("big.png", big)], dest, max_bytes=MB, max_pixels=200_000_000)
    assert rejected == [] and len(saved) == 1
    saved, rejected = save_uploads([("big.png", big)], dest, max_bytes=MB, max_pixels=100_000_000)
    assert saved == [] and "195,000,000 pixels is over the limit of 100,000,000" in rejected[0][1]


def test_bmp_needs_more_than_two_bytes(dest):
    saved, rejected = save_uploads([("notes.bmp", b"BM is how this text file starts\n" * 4)], dest,
                                   max_bytes=MB)
    assert saved == [] and "content is not a BMP image" in rejected[0][1]
    saved, rejected = save_uploads([("real.bmp", img_bytes("BMP"))], dest, max_bytes=MB)
    assert rejected == [] and len(saved) == 1
