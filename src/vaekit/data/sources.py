"""Named data sets: where their files come from and how they are checked.

Every file is verified against the md5 and sha256 its publishers give before it
is used; a download lands in a temporary file and is renamed into place only
once it checks out, so an interrupted download never leaves a bad file behind.
"""
from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..errors import VaekitError


@dataclass(frozen=True)
class RemoteFile:
    name: str
    md5: str
    sha256: str


@dataclass(frozen=True)
class Source:
    folder: str
    mirrors: tuple[str, ...]
    files: tuple[RemoteFile, ...]


_MNIST_FILES = (
    RemoteFile("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873",
               "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
    RemoteFile("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432",
               "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
    RemoteFile("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3",
               "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
    RemoteFile("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c",
               "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
)

SOURCES: dict[str, Source] = {
    "mnist": Source(
        "mnist",
        ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
        _MNIST_FILES,
    ),
    "fashion-mnist": Source(
        "fashion-mnist",
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        (
            RemoteFile("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                       "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"),
            RemoteFile("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe",
                       "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"),
            RemoteFile("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79",
                       "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"),
            RemoteFile("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310",
                       "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"),
        ),
    ),
    "frey-face": Source(
        "frey-face",
        ("https://cs.nyu.edu/~roweis/data/",),
        (RemoteFile("frey_rawface.mat", "5aeb024d42b8a6091f30e5eb18c8a48d",
                    "265a83a23adb081755cd3de375509828e690324d1d60f076b8ecebc840d59c64"),),
    ),
}


def default_data_dir() -> Path:
    """Where named data sets are kept: $VAEKIT_DATA_DIR, else ~/.cache/vaekit."""
    if os.environ.get("VAEKIT_DATA_DIR"):
        return Path(os.environ["VAEKIT_DATA_DIR"])
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "vaekit"


def hashes(path: Path) -> tuple[str, str]:
    """The (md5, sha256) of a file, read in chunks."""
    md5, sha = hashlib.md5(), hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            md5.update(chunk)
            sha.update(chunk)
    return md5.hexdigest(), sha.hexdigest()


def fetch(name: str, data_dir: str | Path | None = None, download: bool = True,
          mirrors: tuple[str, ...] | None = None, progress: bool = False) -> Path:
    """Return the folder holding data set ``name``'s files, downloading what is missing.

    Files already on disk are trusted as they are (their checksums are checked when
    they are downloaded); ``mirrors`` replaces the public locations, e.g. for a local copy.
    """
    source = SOURCES[name]
    folder = Path(data_dir) if data_dir is not None else default_data_dir()
    folder = folder / source.folder
    for rf in source.files:
        if (folder / rf.name).exists():
            continue
        if not download:
            raise VaekitError(f"{folder / rf.name}: missing, and downloading is turned off (data.download=false)")
        folder.mkdir(parents=True, exist_ok=True)
        _download(rf, folder, mirrors or source.mirrors, progress)
    return folder


def _download(rf: RemoteFile, folder: Path, mirrors: tuple[str, ...], progress: bool) -> None:
    target = folder / rf.name
    tmp = target.with_name(target.name + ".part")
    errors = []
    for base in mirrors:
        url = base.rstrip("/") + "/" + rf.name
        try:
            with urllib.request.urlopen(url, timeout=30) as r, open(tmp, "wb") as f:
                total = int(r.headers.get("Content-Length") or 0)
                bar = _bar(total, rf.name) if progress else None
                while chunk := r.read(1 << 16):
                    f.write(chunk)
                    if bar:
                        bar.update(len(chunk))
                if bar:
                    bar.close()
        except urllib.error.HTTPError as e:
            errors.append(f"{url}: HTTP {e.code} {e.reason}")
            tmp.unlink(missing_ok=True)
            continue
        except (urllib.error.URLError, OSError, ValueError) as e:
            errors.append(f"{url}: {getattr(e, 'reason', e)}")
            tmp.unlink(missing_ok=True)
            continue
        md5, sha = hashes(tmp)
        if (md5, sha) != (rf.md5, rf.sha256):
            tmp.unlink(missing_ok=True)
            errors.append(f"{url}: checksum mismatch (md5 {md5}, expected {rf.md5})")
            continue
        os.replace(tmp, target)
        return
    raise VaekitError(f"could not download {rf.name}: " + "; ".join(errors))


def _bar(total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total or None, unit="B", unit_scale=True, desc=desc)
