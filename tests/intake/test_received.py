"""Uploads after they are saved (issue 18, findings 4, 7 and 13; issue 17 point 11): ingested
from their own folder, duplicates and failures deleted from the disk, folder labels recorded
under the uploader and never over an existing label without an administrator, an interrupted
upload found again and finished."""

from __future__ import annotations

import shutil

import pytest

from core.access import User
from core.errors import Forbidden
from core.intake import ingest, ingest_upload, save_uploads, unfinished_uploads
from core.review import current_label, decide
from core.store import open_db
from tests.helpers import write_images

MB = 1_000_000


@pytest.fixture
def db(tmp_path):
    return open_db(tmp_path / "t.db")


def upload(tmp_path, name: str, files: dict[str, bytes]):
    dest = tmp_path / "uploads" / name
    saved, rejected = save_uploads(list(files.items()), dest, max_bytes=MB)
    assert rejected == [] and saved
    return dest


def test_duplicate_and_failed_uploads_do_not_stay_on_disk(db, tmp_path):
    src = write_images(tmp_path / "src", 3)
    ingest(db, [src[0]])
    broken = b"\x89PNG\r\n\x1a\n" + b"\0" * 40
    dest = upload(tmp_path, "u1", {"copy.png": src[0].read_bytes(), "new.png": src[1].read_bytes(),
                                   "broken.png": broken})
    rep = ingest_upload(db, dest)
    assert (rep.added, rep.duplicates, len(rep.failed)) == (1, 1, 1), rep.summary()
    assert sorted(p.name for p in dest.iterdir()) == ["new.png"]
    paths = [r[0] for r in db.execute("SELECT path FROM files")]
    assert not any("copy.png" in p for p in paths), "a deleted copy is not remembered as a file"
    assert db.execute("SELECT COUNT(*) FROM images").fetchone()[0] == 2
    # an upload of nothing but copies leaves no folder behind
    dest2 = upload(tmp_path, "u2", {"again.png": src[1].read_bytes()})
    ingest_upload(db, dest2)
    assert not dest2.exists()


def _class_zip(tmp_path, images):
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for i, p in enumerate(images):
            z.write(p, f"powder/{i}.png")
    return buf.getvalue()


def test_folder_labels_name_the_uploader_and_never_replace_a_label(db, tmp_path):
    """The attack: a non-admin uploads copies of labelled images in class folders with
    'labels from folder names' and overwrote reference labels under the name 'import'."""
    src = write_images(tmp_path / "src", 3)
    ingest(db, src)
    ids = [r[0] for r in db.execute("SELECT id FROM images ORDER BY id")]
    decide(db, ids[0], "relabel", reviewer="alice", label="fibres")
    bob, admin = User("bob", admin=False), User("ann", admin=True)

    dest = upload(tmp_path, "u1", {"set.zip": _class_zip(tmp_path, src[:2])})
    rep = ingest_upload(db, dest, labels_from_folders=True, by=bob)
    assert current_label(db, ids[0])["label"] == "fibres", "alice's label stands"
    assert rep.labels_kept == 1 and rep.labelled == 1
    got = current_label(db, ids[1])
    assert (got["label"], got["source"], got["reviewer"]) == ("powder", "import", "import:bob")

    dest = upload(tmp_path, "u2", {"set.zip": _class_zip(tmp_path, src[:1])})
    with pytest.raises(Forbidden):
        ingest_upload(db, dest, labels_from_folders=True, by=bob, replace_labels=True)
    assert current_label(db, ids[0])["label"] == "fibres"
    rep = ingest_upload(db, dest, labels_from_folders=True, by=admin, replace_labels=True)
    got = current_label(db, ids[0])
    assert (got["label"], got["reviewer"]) == ("powder", "import:ann")


def test_an_interrupted_upload_is_found_and_finished(db, tmp_path):
    src = write_images(tmp_path / "src", 4)
    dest = upload(tmp_path, "u1", {p.name: p.read_bytes() for p in src})
    base = tmp_path / "uploads"
    assert unfinished_uploads(db, base) == [dest]
    ingest(db, [dest / src[0].name])  # the server stopped after the first file
    assert unfinished_uploads(db, base) == [dest]
    rep = ingest_upload(db, dest)
    assert (rep.added, rep.unchanged) == (3, 1)
    assert unfinished_uploads(db, base) == []
    shutil.rmtree(base)
    assert unfinished_uploads(db, base) == []
