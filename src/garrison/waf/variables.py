"""Request collections (ARGS, REQUEST_HEADERS, FILES, XML, ...) built from a WafRequest, as libmodsecurity 3.

Body processors: URLENCODED, MULTIPART, JSON, XML (chosen by content type, or by ``ctl``). Every value is
latin-1 text, one char per byte. No I/O here.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

from garrison.waf.request import WafRequest

Items = list[tuple[str, str]]

_PCT_BYTES = re.compile(r"%([0-9a-fA-F]{2})")


def url_decode_lenient(s: str, plus: bool = True) -> str:
    """``%XX`` decoded, invalid escapes kept, ``+`` as space (ModSecurity's non-strict decoder)."""
    if plus:
        s = s.replace("+", " ")
    if "%" not in s:
        return s
    return _PCT_BYTES.sub(lambda m: chr(int(m.group(1), 16)), s)


def parse_urlencoded(s: str) -> Items:
    out: Items = []
    for pair in s.split("&"):
        if not pair:
            continue
        k, _, v = pair.partition("=")
        out.append((url_decode_lenient(k), url_decode_lenient(v)))
    return out


def processor_for(content_type: str) -> str:
    """The body processor ModSecurity's recommended setup picks for a Content-Type ('' when none)."""
    ct = content_type.split(";", 1)[0].strip().lower()
    if ct == "application/x-www-form-urlencoded":
        return "URLENCODED"
    if ct == "multipart/form-data":
        return "MULTIPART"
    if ct in ("application/json",) or ct.endswith("+json"):
        return "JSON"
    if ct in ("text/xml", "application/xml", "application/soap+xml") or ct.endswith("+xml"):
        return "XML"
    return ""


class RequestData:
    """The collections of one transaction; ``process_body`` fills the phase-2 ones."""

    __slots__ = ("body_error", "body_processor", "coll", "request")

    def __init__(self, request: WafRequest, unique_id: str) -> None:
        self.request = request
        self.body_error = ""
        uri = request.uri
        path, sep, query = uri.partition("?")
        if "://" in path[:10]:  # absolute-form request target: REQUEST_FILENAME is the path part
            rest = path.split("://", 1)[1]
            path = "/" + rest.split("/", 1)[1] if "/" in rest else "/"
        filename = url_decode_lenient(path, plus=False)
        basename = re.split(r"[/\\]", filename)[-1]
        headers = [(k, v) for k, v in request.headers]
        cookies: Items = []
        for k, v in headers:
            if k.lower() == "cookie":
                for part in v.split(";"):
                    part = part.strip()
                    if part:
                        ck, _, cv = part.partition("=")
                        cookies.append((ck, cv))
        args_get = parse_urlencoded(query) if sep else []
        ct = (
            request.content_type
            if request.content_type is not None
            else (request.header("content-type") or "")
        )
        self.body_processor = processor_for(ct)
        line = f"{request.method} {uri} {request.http_version}"
        self.coll: dict[str, Items] = {
            "REQUEST_METHOD": [("", request.method)],
            "REQUEST_PROTOCOL": [("", request.http_version)],
            "REQUEST_LINE": [("", line)],
            "REQUEST_URI": [("", uri)],
            "REQUEST_URI_RAW": [("", uri)],
            "REQUEST_FILENAME": [("", filename)],
            "REQUEST_BASENAME": [("", basename)],
            "QUERY_STRING": [("", query)],
            "REQUEST_HEADERS": headers,
            "REQUEST_HEADERS_NAMES": [(k, k) for k, _ in headers],
            "REQUEST_COOKIES": cookies,
            "REQUEST_COOKIES_NAMES": [(k, k) for k, _ in cookies],
            "REMOTE_ADDR": [("", request.remote_addr)],
            "UNIQUE_ID": [("", unique_id)],
            "REQBODY_PROCESSOR": [("", self.body_processor)],
            "REQUEST_BODY_LENGTH": [("", str(len(request.body)))],
            "FULL_REQUEST_LENGTH": [
                ("", str(len(line) + sum(len(k) + len(v) + 4 for k, v in headers) + len(request.body)))
            ],
        }
        self._set_args(args_get, [])

    def _set_args(self, get: Items, post: Items) -> None:
        c = self.coll
        c["ARGS_GET"] = get
        c["ARGS_GET_NAMES"] = [(k, k) for k, _ in get]
        c["ARGS_POST"] = post
        c["ARGS_POST_NAMES"] = [(k, k) for k, _ in post]
        c["ARGS"] = get + post
        c["ARGS_NAMES"] = c["ARGS_GET_NAMES"] + c["ARGS_POST_NAMES"]
        c["ARGS_COMBINED_SIZE"] = [("", str(sum(len(k) + len(v) for k, v in get + post)))]

    def process_body(self, processor: str, force_body_variable: bool, access: bool = True) -> None:
        """Phase 2 inputs: parse the body with ``processor`` (as set by content type or ``ctl``)."""
        self.body_processor = processor
        self.coll["REQBODY_PROCESSOR"] = [("", processor)]
        body = self.request.body.decode("latin-1") if access else ""
        post: Items = []
        # REQUEST_BODY is filled for URLENCODED, for no processor, or when forced (CRS 901340 forces it).
        if processor == "URLENCODED" or force_body_variable or not processor:
            self.coll["REQUEST_BODY"] = [("", body)]
        if body and processor == "URLENCODED":
            post = parse_urlencoded(body)
        elif body and processor == "MULTIPART":
            post = self._multipart(body)
        elif body and processor == "JSON":
            post = self._json(body)
        elif body and processor == "XML":
            self._xml(body)
        self.coll["REQBODY_ERROR"] = [("", "1" if self.body_error else "0")]
        self._set_args(self.coll["ARGS_GET"], post)

    def _multipart(self, body: str) -> Items:
        ct = self.request.content_type or self.request.header("content-type") or ""
        m = re.search(r"boundary\s*=\s*\"?([^\";,]+)", ct, re.IGNORECASE)
        files: Items = []
        names: Items = []
        sizes: Items = []
        part_headers: Items = []
        post: Items = []
        if m is None:
            self.body_error = "multipart: no boundary"
            return post
        delim = "--" + m.group(1).strip()
        for chunk in body.split(delim)[1:]:
            if chunk.startswith("--"):
                break
            chunk = chunk[2:] if chunk.startswith("\r\n") else chunk[1:] if chunk.startswith("\n") else chunk
            parts = re.split(r"\r?\n\r?\n", chunk, maxsplit=1)
            head, content = (parts[0], parts[1]) if len(parts) == 2 else (parts[0], "")
            if content.endswith("\r\n"):
                content = content[:-2]
            elif content.endswith("\n"):
                content = content[:-1]
            name = filename = None
            lines = [ln for ln in re.split(r"\r?\n", head) if ln]
            for ln in lines:
                if ln.lower().startswith("content-disposition"):
                    nm = re.search(r"\bname\s*=\s*\"([^\"]*)\"|\bname\s*=\s*([^;\s]*)", ln, re.IGNORECASE)
                    fm = re.search(
                        r"\bfilename\*?\s*=\s*\"([^\"]*)\"|\bfilename\*?\s*=\s*([^;\s]*)", ln, re.IGNORECASE
                    )
                    if nm:
                        name = nm.group(1) if nm.group(1) is not None else nm.group(2)
                    if fm:
                        filename = fm.group(1) if fm.group(1) is not None else fm.group(2)
            key = name or ""
            part_headers.extend((key, ln) for ln in lines)
            if filename is not None:
                files.append((key, filename))
                names.append((key, key))
                sizes.append((key, str(len(content))))
            else:
                post.append((key, content))
        c = self.coll
        c["FILES"], c["FILES_NAMES"], c["FILES_SIZES"] = files, names, sizes
        c["FILES_COMBINED_SIZE"] = [("", str(sum(int(v) for _, v in sizes)))]
        c["MULTIPART_PART_HEADERS"] = part_headers
        return post

    def _json(self, body: str) -> Items:
        try:
            doc = json.loads(body.encode("latin-1").decode("utf-8", "replace"))
        except ValueError as exc:
            self.body_error = f"JSON parsing error: {exc}"
            return []
        out: Items = []

        def walk(prefix: str, node: object) -> None:
            if isinstance(node, dict):
                for k, v in node.items():
                    walk(f"{prefix}.{k}", v)
            elif isinstance(node, list):
                for i, v in enumerate(node):
                    walk(f"{prefix}.array_{i}", v)
            else:
                text = (
                    ""
                    if node is None
                    else ("true" if node is True else "false" if node is False else str(node))
                )
                out.append((prefix, text.encode("utf-8").decode("latin-1")))

        walk("json", doc)
        return out

    def _xml(self, body: str) -> None:
        try:
            root = ET.fromstring(body.encode("latin-1"))  # noqa: S314
        except ET.ParseError as exc:
            self.body_error = f"XML parsing error: {exc}"
            return

        def latin(text: str) -> str:
            return text.encode("utf-8").decode("latin-1")

        # XML:/* is the root's string value; XML://@* every attribute value (the XPaths CRS uses).
        items: Items = [("/*", latin("".join(root.itertext())))]
        items.extend(("//@*", latin(v)) for el in root.iter() for v in el.attrib.values())
        self.coll["XML"] = items


__all__ = ["RequestData", "parse_urlencoded", "processor_for", "url_decode_lenient"]
