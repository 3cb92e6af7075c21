# test_web_landing.py: web/landing.js run by Node (no browser here) against a real node, a
# closed port and a proxy's error page: what a citizen's phone shows in each case.
import http.server
import json
import os
import shutil
import subprocess
import tempfile
import threading
import unittest

from ztnode import HOST, NodeTest, env, free_port

NODE = shutil.which("node")

# A DOM of the two elements the script uses, and fetch against BASE; prints what the
# page shows once the script's promise settles.
HARNESS = r"""
const fs = require("fs");
const [src, base] = process.argv.slice(2);
class El {
  constructor(tag) { this.tag = tag; this.className = ""; this._text = ""; this.children = []; this.attrs = {}; }
  set textContent(t) { this._text = t; this.children = []; }
  get textContent() { return this._text + this.children.map((c) => c.textContent).join(""); }
  append(...c) { this.children.push(...c); }
  replaceChildren(...c) { this._text = ""; this.children = c; }
  setAttribute(n, v) { this.attrs[n] = String(v); }
  removeAttribute(n) { delete this.attrs[n]; }
  getAttribute(n) { return n in this.attrs ? this.attrs[n] : null; }
}
const els = { node: new El("p"), plugins: new El("ul") };
els.node.textContent = "…";
els.plugins.setAttribute("aria-busy", "true");
const loading = new El("li");
loading.textContent = "加载中… Loading…";
els.plugins.append(loading);
globalThis.document = { getElementById: (id) => els[id], createElement: (t) => new El(t) };
const realFetch = fetch;
globalThis.fetch = (u, o) => realFetch(base + u, o);
Promise.resolve(eval(fs.readFileSync(src, "utf8"))).then(() => {
  console.log(JSON.stringify({ node: els.node.textContent, list: els.plugins.textContent,
    busy: els.plugins.getAttribute("aria-busy"), classes: els.plugins.children.map((c) => c.className) }));
});
"""


class BadGateway(http.server.BaseHTTPRequestHandler):
    """A reverse proxy whose upstream is down: an HTML error page."""

    def do_GET(self):
        body = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
        self.send_response(502)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


class Landing(NodeTest):
    def setUp(self):
        # scripts/setup installs nodejs (Debian's): without it this says so, not skips
        self.assertTrue(NODE, "node (nodejs) is needed to run the page's script: scripts/setup installs it")
        super().setUp()
        self.dir = tempfile.mkdtemp(prefix="zt-landing-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.harness = os.path.join(self.dir, "harness.js")
        with open(self.harness, "w") as f:
            f.write(HARNESS)

    def show(self, base):
        script = os.path.join(env("ZT_SRC"), "web", "landing.js")
        out = subprocess.run([NODE, self.harness, script, base], capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        return json.loads(out.stdout)

    def test_the_enabled_plugins_are_listed(self):
        n = self.node(plugins=("hello",))
        page = self.show("http://%s:%d" % (HOST, n.port))
        self.assertIn("hello", page["list"])
        self.assertIn("GET /hello", page["list"])
        self.assertNotIn("Loading", page["list"])
        self.assertIsNone(page["busy"])

    def test_a_node_that_cannot_be_reached_is_said_in_the_list(self):
        page = self.show("http://%s:%d" % (HOST, free_port()))
        self.assertNotIn("Loading", page["list"])
        self.assertIn("cannot reach the node", page["list"])
        self.assertEqual(page["classes"], ["error"])
        self.assertIsNone(page["busy"])

    def test_a_proxy_error_page_is_its_status_not_a_json_syntax_error(self):
        srv = http.server.ThreadingHTTPServer((HOST, 0), BadGateway)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        self.addCleanup(srv.server_close)
        self.addCleanup(srv.shutdown)
        page = self.show("http://%s:%d" % (HOST, srv.server_address[1]))
        self.assertNotIn("Loading", page["list"])
        self.assertIn("HTTP 502", page["list"])
        self.assertNotIn("SyntaxError", page["list"] + page["node"])


if __name__ == "__main__":
    unittest.main()
