"""Copy one image, by manifest digest, from one registry to another (P10 mirroring).

Only called after the digest was verified against the pin. Blobs the destination already has are
not sent again; the manifest is pushed by digest (and, when given, under a tag too), so the mirror
holds exactly the bytes upstream served.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from udeploy.engine.provider_api import ProviderUnreachable
from udeploy.providers.oci import ACCEPT, INDEX_TYPES, ImageRef, base_url, sha256_digest


def _call(method: str, url: str, *, body: bytes | None = None, headers: dict[str, str] | None = None,
          timeout: float = 60.0) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers.items()), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers.items()), exc.read() or b""
    except OSError as exc:
        raise ProviderUnreachable(f"{method} {url}: {getattr(exc, 'reason', exc)}", path=url) from exc


def copy_image(source: str, destination_repository: str, digest: str, *, tag: str | None = None) -> str:
    """Copy `source` (a `registry/repo@digest` or `:tag` reference) to `destination_repository`
    (`registry/repo`) and return the digest written, which equals `digest` or this raises."""
    src = ImageRef.parse(source, "")
    dst = ImageRef.parse(destination_repository + ":x", "")
    src_root = f"{base_url(src.registry)}/v2/{src.repository}"
    dst_root = f"{base_url(dst.registry)}/v2/{dst.repository}"
    status, headers, manifest = _call("GET", f"{src_root}/manifests/{digest}", headers={"Accept": ACCEPT})
    if status != 200:
        raise ProviderUnreachable(f"{source}: manifest {digest} not served (HTTP {status})", path=source)
    served = sha256_digest(manifest)
    if served != digest:
        raise ProviderUnreachable(f"{source}: the bytes served for {digest} hash to {served}", path=source)
    media = headers.get("Content-Type", "").split(";")[0]
    doc = json.loads(manifest)
    if media in INDEX_TYPES or "manifests" in doc:
        raise ProviderUnreachable(f"{source}: mirroring an image index is not supported; pin a platform manifest",
                                  path=source)
    for blob in [doc["config"], *doc.get("layers", [])]:
        _copy_blob(src_root, dst_root, str(blob["digest"]))
    for reference in [digest] + ([tag] if tag else []):
        status, _, body = _call("PUT", f"{dst_root}/manifests/{reference}", body=manifest,
                                headers={"Content-Type": media})
        if status not in (200, 201):
            raise ProviderUnreachable(f"push of the manifest to {destination_repository}:{reference} failed "
                                      f"(HTTP {status}: {body[:200]!r})", path=destination_repository)
    return digest


def _copy_blob(src_root: str, dst_root: str, digest: str) -> None:
    status, _, _ = _call("HEAD", f"{dst_root}/blobs/{digest}")
    if status == 200:
        return
    status, _, data = _call("GET", f"{src_root}/blobs/{digest}")
    if status != 200 or sha256_digest(data) != digest:
        raise ProviderUnreachable(f"blob {digest} from {src_root} is missing or corrupt (HTTP {status})", path=digest)
    status, headers, _ = _call("POST", f"{dst_root}/blobs/uploads/")
    location = headers.get("Location")
    if status != 202 or not location:
        raise ProviderUnreachable(f"upload to {dst_root} refused (HTTP {status})", path=dst_root)
    if location.startswith("/"):
        location = dst_root.split("/v2/")[0] + location
    sep = "&" if "?" in location else "?"
    status, _, body = _call("PUT", f"{location}{sep}digest={digest}", body=data,
                            headers={"Content-Type": "application/octet-stream"})
    if status not in (201, 204):
        raise ProviderUnreachable(f"upload of blob {digest} to {dst_root} failed (HTTP {status}: {body[:200]!r})",
                                  path=dst_root)
