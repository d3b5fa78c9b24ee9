"""Tamper evidence: HMAC-SHA256 signatures over version records and alias moves.

The sha256 recorded with a version catches accidental damage to its artifact, but it lives in the
same database as everything else, so whoever can write the registry can change both. A signing
key that is *not* stored with the registry closes that gap: the registry signs what decides which
bytes get loaded (a version's artifact hash and format, and where each alias points) and, with
the key, refuses records whose signature is missing or wrong.

Signatures live in fields every metadata store already has: a version's in its ``tags`` under
`SEAL_TAG` (hidden from `ModelVersion.tags`), an alias move's in the ``details`` of
a ``signed`` event that follows the move and names it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from modeldeploy.exceptions import AuthenticityError, InvalidParameterError

if TYPE_CHECKING:
    from modeldeploy.registry._metadata import MetadataStore, Record

__all__ = ["ENV_SIGNING_KEY", "ENV_SIGNING_KEYS", "SEAL_TAG", "SIGNED_EVENT", "Signer"]

#: The environment variable holding the key a registry signs with (when none is passed).
ENV_SIGNING_KEY = "MODELDEPLOY_SIGNING_KEY"
#: Several keys, comma-separated: the first signs, every one verifies (key rotation).
ENV_SIGNING_KEYS = "MODELDEPLOY_SIGNING_KEYS"
#: The tag under which a version's signature is stored.
SEAL_TAG = "modeldeploy.seal"
#: The event kind that carries an alias move's signature.
SIGNED_EVENT = "signed"
#: The shortest key accepted, in bytes (HMAC-SHA256 wants at least 128 bits of secret).
MIN_KEY_BYTES = 16

_ALG = "HMAC-SHA256"

# Status of a signed record, as Signer.check reports it.
OK, OLD_KEY, UNSIGNED, BAD = "ok", "signed with an older key", "unsigned", "bad signature"


def _key_id(key: bytes) -> str:
    """A short public name of a key, so a signature says which key made it (never the key)."""
    return hashlib.sha256(b"modeldeploy key id\x00" + key).hexdigest()[:12]


def _canonical(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode()


def version_payload(rec: Mapping[str, Any]) -> dict[str, Any]:
    """What a version's signature covers: everything that decides which bytes load and how."""
    return {
        "record": "version",
        "name": rec["name"],
        "version": int(rec["version"]),
        "created_at": rec["created_at"],
        "sha256": rec["sha256"],
        "size": int(rec["size"]),
        "format": rec["format"],
        "signature": rec["signature"],
        "parent": rec["parent"],
    }


def move_payload(move: Mapping[str, Any]) -> dict[str, Any]:
    """What an alias move's signature covers: which alias, where to, when, and which event."""
    return {
        "record": "alias",
        "name": move["name"],
        "alias": move["alias"],
        "version": move["version"],
        "previous": move["previous"],
        "kind": move["kind"],
        "event": int(move["id"]),
        "time": move["time"],
    }


class Signer:
    """Signs and checks records with HMAC-SHA256; the first key signs, every key verifies.

    Parameters
    ----------
    keys
        The secret keys (bytes, or str taken as UTF-8), newest first, each at least
        `MIN_KEY_BYTES` long.
    """

    def __init__(self, keys: Sequence[bytes]) -> None:
        self._keys = {_key_id(k): k for k in keys}
        self.key_id = _key_id(keys[0])
        # Results of check() by payload and seal: a cached load stays in microseconds. A hit
        # can only repeat a verdict computed on identical input, so it cannot be forged.
        self._checked: dict[tuple[Any, ...], str] = {}
        #: (name, version, sha256, format) of version records whose signature checked out.
        self.authentic: set[tuple[str, int, str, str]] = set()

    def __repr__(self) -> str:
        return f"Signer(keys={list(self._keys)})"  # key ids only, never a key

    @classmethod
    def from_config(cls, signing_key: Any, owner: str) -> Signer | None:
        """The signer of ``signing_key`` (or of the environment when it is None), or None."""
        if signing_key is None:
            many = os.environ.get(ENV_SIGNING_KEYS, "")
            one = os.environ.get(ENV_SIGNING_KEY, "")
            raw: list[Any] = [k.strip() for k in many.split(",") if k.strip()] or (
                [one] if one else []
            )
            if not raw:
                return None
            param = f"${ENV_SIGNING_KEYS}" if many else f"${ENV_SIGNING_KEY}"
        else:
            raw = [signing_key] if isinstance(signing_key, (str, bytes)) else signing_key
            param = "signing_key"
        try:
            candidates = list(raw)
        except TypeError:
            candidates = [raw]
        keys = [k.encode() if isinstance(k, str) else k for k in candidates]
        if not keys or not all(isinstance(k, bytes) and len(k) >= MIN_KEY_BYTES for k in keys):
            found = ", ".join(
                f"a {type(k).__name__} of {len(k)} bytes" if isinstance(k, bytes) else repr(k)
                for k in keys
            )
            raise InvalidParameterError(
                f"The {param!r} parameter of {owner} must be a secret of at least "
                f"{MIN_KEY_BYTES} bytes (bytes or str), or a list of them with the signing key "
                f"first. Got {found or 'no key'} instead. Generate a key with: "
                "python -c 'import secrets; print(secrets.token_hex(32))'"
            )
        return cls(keys)

    def seal(self, payload: Mapping[str, Any]) -> dict[str, str]:
        """The signature of ``payload`` with the signing key, as stored."""
        mac = hmac.new(self._keys[self.key_id], _canonical(payload), hashlib.sha256)
        return {"alg": _ALG, "key": self.key_id, "mac": mac.hexdigest()}

    def check(self, payload: Mapping[str, Any], seal: Any) -> str:
        """``OK``, ``OLD_KEY`` (valid, by a key that no longer signs), ``UNSIGNED`` or ``BAD``."""
        if not isinstance(seal, Mapping) or "mac" not in seal:
            return UNSIGNED
        try:
            memo: tuple[Any, ...] | None = (
                *payload.values(),
                seal.get("alg"),
                seal.get("key"),
                seal["mac"],
            )
            hash(memo)
        except TypeError:  # an unhashable value in a damaged record: just compute
            memo = None
        if memo is not None and memo in self._checked:
            return self._checked[memo]
        status = self._compute(payload, seal)
        if memo is not None:
            if len(self._checked) >= 4096:
                self._checked.clear()
            self._checked[memo] = status
        return status

    def _compute(self, payload: Mapping[str, Any], seal: Mapping[str, Any]) -> str:
        key = self._keys.get(str(seal.get("key", "")))
        if key is None or seal.get("alg") != _ALG or not isinstance(seal["mac"], str):
            return BAD
        expected = hmac.new(key, _canonical(payload), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, seal["mac"]):
            return BAD
        return OK if seal.get("key") == self.key_id else OLD_KEY

    def note_version(self, rec: Mapping[str, Any]) -> bool:
        """Whether a version record's signature checks out; remember it when it does."""
        if version_problem(self, rec) is not None:
            return False
        if len(self.authentic) >= 4096:
            self.authentic.clear()
        self.authentic.add((rec["name"], int(rec["version"]), rec["sha256"], rec["format"]))
        return True

    # -- what the registry asks of its signer

    def sign_version(self, metadata: MetadataStore, name: str, version: int, at: str) -> Record:
        """Sign a version's record as it is stored now; return the ``updated`` event."""
        seal = self.seal(version_payload(metadata.get_version(name, version)))
        return metadata.update_version(name, version, metrics=None, tags={SEAL_TAG: seal}, at=at)

    def sign_move(self, metadata: MetadataStore, move: Mapping[str, Any], at: str) -> Record:
        """Sign an alias move (an event record); return the ``signed`` event."""
        return metadata.add_event(
            move["name"],
            SIGNED_EVENT,
            version=move["version"],
            alias=move["alias"],
            reason=f"signature of event {move['id']}",
            details={"move": int(move["id"]), "seal": self.seal(move_payload(move))},
            at=at,
        )

    def require_version(self, rec: Mapping[str, Any]) -> None:
        """Raise [`AuthenticityError`][modeldeploy.exceptions.AuthenticityError] unless the version
        record is signed by a known key."""
        if self.note_version(rec):
            return
        problem = version_problem(self, rec)
        if problem is not None:
            name, version = rec["name"], int(rec["version"])
            raise AuthenticityError(
                f"{name}:{version} {_explain(problem)} Expected a record signed with this "
                f"registry's key ({self.key_id}). Nothing was loaded. "
                + _advice(problem, f"registry.sign({name!r}, {version})"),
                name=name,
                version=version,
            )

    def require_loadable(
        self, metadata: MetadataStore, name: str, version: int, sha256: str, format: str
    ) -> None:
        """Raise [`AuthenticityError`][modeldeploy.exceptions.AuthenticityError] unless the stored
        record of ``name:version`` is
        signed and still says ``sha256`` and ``format`` (what a ``ModelVersion`` says)."""
        if (name, version, sha256, format) in self.authentic:
            return
        rec = metadata.get_version(name, version)
        self.require_version(rec)
        if (rec["sha256"], rec["format"]) != (sha256, format):
            raise AuthenticityError(
                f"This ModelVersion of {name}:{version} says sha256 {sha256[:12]}... and format "
                f"{format!r}, but the signed record says {rec['sha256'][:12]}... and "
                f"{rec['format']!r}. Nothing was loaded. Get the record again with "
                f"registry.get({name!r}, {version}).",
                name=name,
                version=version,
            )

    def require_alias(
        self, metadata: MetadataStore, name: str, alias: str, rec: Mapping[str, Any]
    ) -> None:
        """Raise [`AuthenticityError`][modeldeploy.exceptions.AuthenticityError] unless the alias's
        latest move is signed and leads
        to ``rec``."""
        version = int(rec["version"])
        _, problem = alias_problem(self, metadata.alias_events(name, alias), version)
        if problem is not None:
            raise AuthenticityError(
                f"Alias {alias!r} of model {name!r} {_explain(problem, alias=True)} Expected "
                f"its latest move to be signed with this registry's key ({self.key_id}). "
                "Nothing was loaded. "
                + _advice(
                    problem,
                    f"registry.sign({name!r})",
                    promote=f"registry.promote({name!r}, VERSION, alias={alias!r})",
                ),
                name=name,
                version=version,
                alias=alias,
            )

    def sign_model(
        self,
        metadata: MetadataStore,
        name: str,
        version: int | None,
        *,
        force: bool,
        at: str,
    ) -> tuple[list[dict[str, Any]], list[Record]]:
        """Sign what is unsigned (or signed with an older key) among a model's versions (one
        version when given) and the aliases pointing at them; return what was signed and the
        events. Refuses, signing nothing, when a signature is wrong (unless ``force``) or an
        alias disagrees with its history."""
        recs = (
            [metadata.get_version(name, version)]
            if version is not None
            else metadata.list_versions(name)
        )
        todo_versions: list[tuple[Mapping[str, Any], str]] = []
        refused: list[str] = []
        for rec in recs:
            status = self.check(version_payload(rec), rec["tags"].get(SEAL_TAG))
            if status == BAD and not force:
                refused.append(f"{name}:{rec['version']} has a bad signature")
            elif status != OK:
                todo_versions.append((rec, status))
        numbers = {int(r["version"]) for r in recs}
        todo_moves: list[tuple[Mapping[str, Any], str]] = []
        for alias, target in metadata.aliases(name).items():
            if target not in numbers:
                continue
            move, seal = move_seal(metadata.alias_events(name, alias))
            if move is None or move["kind"] == "alias_deleted" or move["version"] != target:
                refused.append(
                    f"alias {alias!r} points at version {target}, which its history does not "
                    f"say (promote the version you want: registry.promote({name!r}, VERSION, "
                    f"alias={alias!r}))"
                )
                continue
            status = self.check(move_payload(move), seal)
            if status == BAD and not force:
                refused.append(f"the latest move of alias {alias!r} has a bad signature")
            elif status != OK:
                todo_moves.append((move, status))
        if refused:
            raise AuthenticityError(
                f"Did not sign model {name!r}: {'; '.join(refused)}. Nothing was signed. A bad "
                "signature means the record changed after signing or was signed with a key this "
                "registry does not have: restore the database from a backup, add the old key "
                "(signing_key=[new, old]), or, once registry.verify() shows the artifacts intact "
                "and you trust the records as they are, sign them with force=True.",
                name=name,
                version=version,
            )
        signed: list[dict[str, Any]] = []
        events: list[Record] = []
        for unsigned, status in todo_versions:
            number = int(unsigned["version"])
            events.append(self.sign_version(metadata, name, number, at))
            signed.append({"name": name, "version": number, "alias": None, "was": status})
        for move, status in todo_moves:
            events.append(self.sign_move(metadata, move, at))
            signed.append(
                {"name": name, "version": move["version"], "alias": move["alias"], "was": status}
            )
        return signed, events

    def problems(self, metadata: MetadataStore, name: str) -> list[dict[str, Any]]:
        """The unsigned or badly signed versions and aliases of a model, as ``verify`` lists
        them."""
        out: list[dict[str, Any]] = []
        recs = {int(r["version"]): r for r in metadata.list_versions(name)}
        for number, rec in recs.items():
            problem = version_problem(self, rec)
            if problem is not None:
                out.append(
                    {"name": name, "version": number, "sha256": rec["sha256"], "problem": problem}
                )
        for alias, target in metadata.aliases(name).items():
            _, problem = alias_problem(self, metadata.alias_events(name, alias), target)
            if problem is not None:
                out.append(
                    {
                        "name": name,
                        "version": target,
                        "sha256": recs[target]["sha256"] if target in recs else "",
                        "alias": alias,
                        "problem": f"alias {alias!r} {problem}",
                    }
                )
        return out


def _explain(problem: str, *, alias: bool = False) -> str:
    """The rest of the sentence after "m:3 " or "Alias 'production' of model 'm' "."""
    if problem == UNSIGNED:
        return "has an unsigned latest move." if alias else "is unsigned."
    if problem == BAD:
        lead = (
            "has a latest move whose signature does not match"
            if alias
            else "has a signature that does not match"
        )
        return (
            f"{lead}: the record changed after it was signed (artifact hash, format, version or "
            "alias), or it was signed with a key this registry does not have."
        )
    return f"{problem}."


def _advice(problem: str, sign: str, *, promote: str = "") -> str:
    if problem == UNSIGNED:
        return (
            "If it predates signing (or a process stopped between a change and its signature), "
            f"check it with registry.verify() and sign it: {sign}."
        )
    if problem == BAD:
        return (
            "Restore the registry database from a backup, or pass the key it was signed with "
            "(signing_key=[new, old])."
        )
    return f"Point the alias where it belongs: {promote}." if promote else ""


def move_seal(events: Sequence[Mapping[str, Any]]) -> tuple[Mapping[str, Any] | None, Any]:
    """The latest move in ``events`` (from ``MetadataStore.alias_events``) and its seal."""
    moves = [e for e in events if e["kind"] in ("promoted", "rolled_back", "alias_deleted")]
    if not moves:
        return None, None
    move = moves[-1]
    seals = [
        e["details"].get("seal")
        for e in events
        if e["kind"] == SIGNED_EVENT
        and isinstance(e["details"], Mapping)
        and e["details"].get("move") == move["id"]
    ]
    return move, (seals[-1] if seals else None)


def version_problem(signer: Signer, rec: Mapping[str, Any]) -> str | None:
    """Why a version record fails its signature check (``UNSIGNED``/``BAD``), or None."""
    status = signer.check(version_payload(rec), rec["tags"].get(SEAL_TAG))
    return status if status in (UNSIGNED, BAD) else None


def alias_problem(
    signer: Signer, events: Sequence[Mapping[str, Any]], version: int
) -> tuple[Mapping[str, Any] | None, str | None]:
    """The latest move of an alias that points at ``version``, and why it fails, or None."""
    move, seal = move_seal(events)
    if move is None or move["kind"] == "alias_deleted" or move["version"] != version:
        recorded = "no move" if move is None else f"{move['kind']} to {move['version']}"
        return move, (
            f"points at version {version} but its last recorded move is {recorded}: changed "
            "outside the registry"
        )
    status = signer.check(move_payload(move), seal)
    return move, (status if status in (UNSIGNED, BAD) else None)
