"""The agency directory file: which agency code is which court, bureau or police station (机关名录).

The directory is a TOML file kept by the operator (`docs/agencies.example.toml` shows it), not part of the event
store: names are reference data that an operator corrects, and nothing recorded depends on them. The file is
HANDOFF_AGENCIES_FILE, else `agencies.toml` in the working directory; a file that does not exist is an empty
directory (and the first `add` creates it).

Readers in a long-running process (the dashboard, the API) see an edited file on their next call: the file is read
again when its modification time or size changed. A file edited into something invalid is refused once, loudly,
and the last valid directory stays in use, so that a typo does not take the names off every page.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import tomli_w

from domain.agencies import (Agency, AgencyDirectoryError, agency_label, directory_document, parse_agencies,
                             with_agency)

ENV_VAR = "HANDOFF_AGENCIES_FILE"
DEFAULT_FILE = "agencies.toml"

_HEADER = ("# 机关名录 / agency directory of handoff: one [[agency]] table per agency (id, kind, region, name).\n"
           "# Written by `handoff agency add`, sorted by id; comments in this file are not kept.\n\n")

log = logging.getLogger("handoff.agencies")


class AgencyFileError(AgencyDirectoryError):
    """The directory file cannot be read or is not a valid directory; the message names the file."""

    def __init__(self, path: Path, problems: list[str]):
        super().__init__([f"{path}: {problem}" for problem in problems])
        self.path = path


def directory_path(environ: Mapping[str, str] | None = None) -> Path:
    """HANDOFF_AGENCIES_FILE, else `agencies.toml` in the working directory."""
    environ = os.environ if environ is None else environ
    return Path(environ.get(ENV_VAR) or DEFAULT_FILE)


class AgencyDirectory:
    """The agencies of one TOML file, by id."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._stamp: tuple[int, int] | None = None
        self._by_id: dict[str, Agency] = {}
        self._refresh(strict=True)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AgencyDirectory:
        return cls(directory_path(environ))

    # -- reading ----------------------------------------------------------------------------------------------------

    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None
        return stat.st_mtime_ns, stat.st_size

    def _read(self) -> tuple[tuple[int, int] | None, dict[str, Agency]]:
        stamp = self._file_stamp()
        if stamp is None:
            return None, {}
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None, {}
        except (OSError, UnicodeDecodeError) as error:
            raise AgencyFileError(self.path, [f"无法读取 / cannot be read: {error}"]) from None
        try:
            agencies = parse_agencies(text)
        except AgencyDirectoryError as error:
            raise AgencyFileError(self.path, error.problems) from None
        return stamp, {agency.id: agency for agency in agencies}

    def _refresh(self, *, strict: bool = False) -> None:
        if self._file_stamp() == self._stamp and not strict:
            return
        try:
            self._stamp, self._by_id = self._read()
        except AgencyFileError as error:
            if strict:
                raise
            # Said once per change of the file: the stamp is taken so that the next call does not say it again.
            log.warning("%s (the agency directory read before stays in use)", error)
            self._stamp = self._file_stamp()

    def list(self) -> list[Agency]:
        """Every agency, sorted by id."""
        self._refresh()
        return sorted(self._by_id.values(), key=lambda agency: agency.id)

    def get(self, agency_id: str) -> Agency | None:
        self._refresh()
        return self._by_id.get(agency_id)

    def name_of(self, agency_id: str) -> str | None:
        """The agency's name, or None when the directory does not know the id."""
        agency = self.get(agency_id)
        return agency.name if agency else None

    def label(self, agency_id: str | None) -> str:
        """"盘州市人民法院（FY-520222-01）", or the id alone when unknown (domain.agencies.agency_label)."""
        self._refresh()
        return agency_label(agency_id, self._by_id)

    def __len__(self) -> int:
        self._refresh()
        return len(self._by_id)

    # -- writing ----------------------------------------------------------------------------------------------------

    def add(self, agency: Agency, *, replace: bool = False) -> None:
        """Add an agency and write the file back, sorted by id. The file is read again first, so that an entry
        written meanwhile by someone else is kept; an id already there is refused unless `replace`
        (AgencyDirectoryError); a file that is not valid now is refused (AgencyFileError) rather than overwritten."""
        _, current = self._read()
        agencies = with_agency(current.values(), agency, replace=replace)
        # One [[agency]] table per agency, as people write the file (tomli_w would make short ones an inline array);
        # tomli_w still writes each value, so that quotes and backslashes in a name are escaped right.
        body = "\n".join("[[agency]]\n" + tomli_w.dumps(entry) for entry in directory_document(agencies)["agency"])
        if parse_agencies(body) != agencies:  # never write what would not read back as this directory
            raise AgencyFileError(self.path, ["写出的名录与预期不符 / the directory written does not read back"])
        self._write(body)
        self._stamp, self._by_id = self._file_stamp(), {entry.id: entry for entry in agencies}

    def _write(self, body: str) -> None:
        """Replace the file at once (a temporary file renamed over it): a crash leaves the old file or the new one."""
        folder = self.path.resolve().parent
        folder.mkdir(parents=True, exist_ok=True)
        handle = tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=folder, prefix=f".{self.path.name}.",
                                             suffix=".tmp", delete=False)
        try:
            with handle:
                handle.write(_HEADER + body)
                handle.flush()
                os.fsync(handle.fileno())
            # The temporary file is private (0600); the directory is not: keep the file's mode, or the usual 0644.
            os.chmod(handle.name, self.path.stat().st_mode & 0o777 if self.path.exists() else 0o644)
            os.replace(handle.name, self.path)
        except BaseException:
            Path(handle.name).unlink(missing_ok=True)
            raise
