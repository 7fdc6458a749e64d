"""The HTTP side of LocalHub: a request handler class that routes Hub-protocol requests to a `LocalHub`.

Split from `hub_server.py`, which holds the in-memory repos and the server's life cycle.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

from hf_provider.testing.hub_server import _HubError

if TYPE_CHECKING:
    from hf_provider.testing.hub_server import LocalHub


def make_handler(hub: LocalHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the client pools connections
        timeout = 10  # an idle keep-alive connection frees its thread after this

        def log_message(self, format: str, *args: object) -> None:  # quiet: the request log is `hub.requests`
            pass

        def do_HEAD(self) -> None:
            self._handle(body=False)

        def do_GET(self) -> None:
            self._handle(body=True)

        def _handle(self, *, body: bool) -> None:
            self._recorded = False
            try:
                failure = hub._take_failure(self.path)
                if failure is not None:
                    self._send(
                        failure,
                        {"X-Error-Message": "injected failure"},
                        json.dumps({"error": "injected failure"}).encode(),
                        body,
                    )
                    return
                self._route(body)
            except _HubError as e:
                headers = {
                    "X-Error-Message": e.message,
                    **({"X-Error-Code": e.code} if e.code else {}),
                    **({"X-Repo-Commit": e.commit} if e.commit else {}),
                }
                self._send(e.status, headers, json.dumps({"error": e.message}).encode(), body)
            except Exception as e:  # a bug in the fake Hub must show up in the test, not hang the client
                self._send(500, {"X-Error-Message": repr(e)}, repr(e).encode(), body)
            finally:
                if not self._recorded:  # the connection broke before any answer
                    hub._record(self.command, self.path, 500)

        def _send(
            self,
            status: int,
            headers: Mapping[str, str],
            payload: bytes,
            body: bool,
            content_type: str = "application/json",
        ) -> int:
            # Recorded before the answer leaves: a client that has its answer finds its request in the log
            # (recording after the write let a test count the Hub's requests before the last one was there).
            hub._record(self.command, self.path, status)
            self._recorded = True
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            if body:
                self.wfile.write(payload)
            return status

        def _route(self, body: bool) -> int:
            split = urlsplit(self.path)
            query = parse_qs(split.query)
            segments = [unquote(s) for s in split.path.strip("/").split("/")]
            if segments == ["api", "agent-harnesses"]:  # fetched once a process when telemetry is on
                return self._send(200, {}, b'{"standardEnvVars": [], "harnesses": {}}', body)
            if segments[:2] == ["api", "models"] and len(segments) > 2:
                return self._send(200, {}, json.dumps(hub._api(segments[2:], query)).encode(), body)
            if segments[:1] == ["_lfs"]:
                return self._lfs(query, body)
            if "resolve" in segments[1:3]:
                return self._resolve(segments, body)
            raise _HubError(404, None, f"no route for {split.path}")

        def _resolve(self, segments: list[str], body: bool) -> int:
            repo_id, repo, rest = hub._split_repo(segments)
            if len(rest) < 3 or rest[0] != "resolve":
                raise _HubError(404, None, "expected /{repo}/resolve/{revision}/{filename}")
            commit = hub._commit(repo, rest[1])
            filename = "/".join(rest[2:])
            blob = commit.files.get(filename)
            if blob is None:
                raise _HubError(
                    404, "EntryNotFound", f"{filename} does not exist on {commit.sha}", commit.sha
                )
            if blob.lfs:
                q = urlencode({"r": repo_id, "c": commit.sha, "f": filename})
                port = self.server.server_address[1]
                location = f"http://{hub.lfs_host}:{port}/_lfs/{blob.sha256}?{q}"
                return self._send(
                    302,
                    {
                        "X-Repo-Commit": commit.sha,
                        "ETag": f'"{blob.git_oid}"',
                        "X-Linked-Etag": f'"{blob.sha256}"',
                        "X-Linked-Size": str(len(blob.data)),
                        "Location": location,
                    },
                    b"",
                    body,
                )
            return self._bytes(
                hub._payload(repo_id, commit, filename),
                body,
                {"X-Repo-Commit": commit.sha, "ETag": f'"{blob.git_oid}"'},
            )

        def _lfs(self, query: dict[str, list[str]], body: bool) -> int:
            (repo_id,), (sha,), (filename,) = query.get("r", [""]), query.get("c", [""]), query.get("f", [""])
            _, repo, _ = hub._split_repo(repo_id.split("/"))
            commit = hub._commit(repo, sha)
            if filename not in commit.files:
                raise _HubError(404, "EntryNotFound", f"{filename} does not exist on {sha}", sha)
            return self._bytes(
                hub._payload(repo_id, commit, filename), body, {"ETag": f'"{commit.files[filename].sha256}"'}
            )

        def _bytes(self, data: bytes, body: bool, headers: dict[str, str]) -> int:
            headers = {"Accept-Ranges": "bytes", **headers}
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
            if m and data:
                start = int(m.group(1))
                end = min(int(m.group(2)) if m.group(2) else len(data) - 1, len(data) - 1)
                if start > end:
                    return self._send(416, {"Content-Range": f"bytes */{len(data)}"}, b"", body)
                headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
                return self._send(206, headers, data[start : end + 1], body, "application/octet-stream")
            return self._send(200, headers, data, body, "application/octet-stream")

    return Handler
