# test_static.py: static files from web_dir: content types, ETag/304, folders, no way out.
import os
import tempfile
import shutil
import unittest

from ztnode import NodeTest, parse_responses

INDEX = b"<!doctype html><title>e2e</title><h1>index of the e2e web folder</h1>\n"
CSS = b"body { color: #123456; }\n"
JS = b"console.log('e2e');\n"
DOCS_INDEX = b"<!doctype html><p>docs index</p>\n"
PAGE = "<!doctype html><p>nested page 政通</p>\n".encode()
SECRET = b"SECRET-OUTSIDE-THE-WEB-FOLDER\n"


class Static(NodeTest):
    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="zt-e2e-web-")
        cls.addClassCleanup(shutil.rmtree, cls.root, True)
        web = os.path.join(cls.root, "web")
        os.makedirs(os.path.join(web, "docs", "deep"))
        files = {
            "index.html": INDEX,
            "style.css": CSS,
            "app.js": JS,
            "data.json": b'{"a": 1}\n',
            "logo.svg": b'<svg xmlns="http://www.w3.org/2000/svg"/>\n',
            "docs/index.html": DOCS_INDEX,
            "docs/page.html": PAGE,
            "docs/deep/note.txt": b"plain text\n",
            "change.txt": b"version one\n",
        }
        for name, data in files.items():
            with open(os.path.join(web, name), "wb") as f:
                f.write(data)
        with open(os.path.join(cls.root, "secret.txt"), "wb") as f:
            f.write(SECRET)
        cls.web = web
        cls.shared_node(web_dir=web)

    def get(self, path, headers=None, method="GET"):
        return self.shared.request(method, path, headers=headers)

    def test_index_at_root(self):
        st, h, b = self.get("/")
        self.assertEqual(st, 200)
        self.assertEqual(b, INDEX)
        self.assertTrue(h["content-type"].startswith("text/html"), h)
        self.assertEqual(h["content-length"], str(len(INDEX)))
        self.assertEqual(self.get("/index.html")[2], INDEX)

    def test_safety_headers(self):
        """Every answer but JSON says nosniff, once (a browser never renders JSON); an answer
        to someone signed in is stored by no cache (it may hold personal data), a file is
        kept but asked for again, an anonymous API answer is as it is; a page is framed by
        no other site."""
        for path, auth, page, cache, sniff in (
                ("/", False, True, ["no-cache"], True), ("/docs/page.html", False, True, ["no-cache"], True),
                ("/app.js", False, False, ["no-cache"], True), ("/style.css", False, False, ["no-cache"], True),
                ("/docs/deep/note.txt", False, False, ["no-cache"], True),
                ("/data.json", False, False, ["no-cache"], False),
                ("/healthz", False, False, [], False), ("/no-such-file", False, False, [], False),
                ("/auth/me", True, False, ["no-store"], False),
                ("/admin/users/01NOSUCHACCOUNT00000000000A", True, False, ["no-store"], False)):
            with self.subTest(path=path, auth=auth):
                with self.shared.rawconn(auth=auth) as c:
                    c.send(("GET %s HTTP/1.1\r\nHost: e2e\r\nConnection: close\r\n\r\n" % path).encode())
                    r = parse_responses(c.read_until_close())[0]
                self.assertEqual(r.header_all("x-content-type-options"), ["nosniff"] if sniff else [])
                self.assertEqual(r.header_all("cache-control"), cache)
                self.assertEqual(r.header_all("content-security-policy"), ["frame-ancestors 'none'"] if page else [])
                self.assertEqual(r.header_all("x-frame-options"), ["DENY"] if page else [])

    def test_content_types(self):
        want = {
            "/style.css": ("text/css", CSS),
            "/app.js": ("javascript", JS),
            "/data.json": ("application/json", None),
            "/logo.svg": ("image/svg+xml", None),
            "/docs/page.html": ("text/html", PAGE),
            "/docs/deep/note.txt": ("text/plain", b"plain text\n"),
        }
        for path, (ctype, body) in want.items():
            with self.subTest(path=path):
                st, h, b = self.get(path)
                self.assertEqual(st, 200, b)
                self.assertIn(ctype, h.get("content-type", ""))
                if body is not None:
                    self.assertEqual(b, body)

    def test_etag_and_if_none_match(self):
        st, h, b = self.get("/style.css")
        self.assertEqual(st, 200)
        etag = h.get("etag")
        self.assertTrue(etag, h)
        self.assertTrue(etag.startswith('"') or etag.startswith('W/"'), etag)
        st, h2, b2 = self.get("/style.css", {"If-None-Match": etag})
        self.assertEqual(st, 304)
        self.assertEqual(b2, b"")
        self.assertEqual(h2.get("etag"), etag)
        self.assertTrue(h2.get("x-request-id"))
        # a list that holds it, and *, match too
        st, _, _ = self.get("/style.css", {"If-None-Match": '"nope", %s' % etag})
        self.assertEqual(st, 304)
        st, _, _ = self.get("/style.css", {"If-None-Match": "*"})
        self.assertEqual(st, 304)
        # another tag does not
        st, _, b3 = self.get("/style.css", {"If-None-Match": '"something-else"'})
        self.assertEqual(st, 200)
        self.assertEqual(b3, CSS)
        # each file has its own tag
        self.assertNotEqual(self.get("/app.js")[1].get("etag"), etag)
        st, _, _ = self.get("/app.js", {"If-None-Match": etag})
        self.assertEqual(st, 200)

    def test_changed_file_gets_a_new_etag(self):
        st, h, b = self.get("/change.txt")
        self.assertEqual(b, b"version one\n")
        old = h["etag"]
        with open(os.path.join(self.web, "change.txt"), "wb") as f:
            f.write(b"version two, longer\n")
        st, h, b = self.get("/change.txt", {"If-None-Match": old})
        self.assertEqual(st, 200)
        self.assertEqual(b, b"version two, longer\n")
        self.assertNotEqual(h["etag"], old)

    def test_head(self):
        with self.shared.rawconn() as c:
            c.send(b"HEAD /style.css HTTP/1.1\r\nHost: e2e\r\n\r\n")
            r = c.response(head=True)
            c.send(b"GET /app.js HTTP/1.1\r\nHost: e2e\r\n\r\n")
            after = c.response()
        self.assertEqual(r.status, 200)
        self.assertEqual(r.headers.get("content-length"), str(len(CSS)))
        self.assertEqual(after.body, JS)

    def test_folder_without_slash_redirects(self):
        st, h, b = self.get("/docs")
        self.assertEqual(st, 301, b)
        self.assertTrue(h.get("location", "").endswith("/docs/"), h)
        st, h, b = self.get("/docs/")
        self.assertEqual(st, 200)
        self.assertEqual(b, DOCS_INDEX)
        st, h, b = self.get("/docs/deep")
        self.assertEqual(st, 301)
        self.assertTrue(h.get("location", "").endswith("/docs/deep/"), h)

    def test_folder_without_index_is_not_listed(self):
        st, h, b = self.get("/docs/deep/")
        self.assertIn(st, (403, 404), b)
        self.assertNotIn(b"note.txt", b)

    def test_missing_file_is_404_problem(self):
        st, h, b = self.get("/no-such-file.css")
        self.assertProblem(st, h, b, 404, "not-found")
        st, h, b = self.get("/docs/no-such.html")
        self.assertProblem(st, h, b, 404, "not-found")

    def test_no_way_out_of_the_folder(self):
        attempts = [
            "/../secret.txt",
            "/docs/../../secret.txt",
            "/%2e%2e/secret.txt",
            "/%2E%2E/secret.txt",
            "/docs/%2e%2e/%2e%2e/secret.txt",
            "/..%2fsecret.txt",
            "/%2e%2e%2fsecret.txt",
            "/docs/..%2f..%2fsecret.txt",
            "/.%2e/secret.txt",
            "/docs/deep/../../../secret.txt",
            "/..",
            "/%2e%2e",
            "/docs/%2e%2e%2f%2e%2e%2fsecret.txt",
            "/index.html%00.css",
            "/%252e%252e/secret.txt",
            "//secret.txt",
            "/" + "../" * 20 + "etc/passwd",
        ]
        for path in attempts:
            with self.subTest(path=path):
                wire = ("GET %s HTTP/1.1\r\nHost: e2e\r\nConnection: close\r\n\r\n" % path).encode()
                data = self.shared.raw(wire)
                rs = parse_responses(data)
                self.assertEqual(len(rs), 1, data[:500])
                self.assertIn(rs[0].status, (400, 404), rs[0])
                self.assertNotIn(b"SECRET", data)
                self.assertNotIn(b"root:", data)

    def test_routes_win_over_files(self):
        st, h, b = self.get("/healthz")
        self.assertEqual(st, 200)
        self.assertIn("json", h["content-type"])


if __name__ == "__main__":
    unittest.main()
