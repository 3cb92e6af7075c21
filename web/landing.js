// The landing page: the node's name and its enabled plugins, each with links to its routes.
(async function () {
  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  };
  // A JSON answer, or an error that says what came instead: a proxy's HTML error page is
  // "HTTP 502", not a JSON syntax error; a network that never answers gives up in 15 s
  // instead of leaving "Loading…" on the phone for good.
  const getJSON = async (url) => {
    let r;
    try {
      r = await fetch(url, { signal: AbortSignal.timeout(15000) });
    } catch (e) {
      throw new Error(e.name === "TimeoutError" ? `${url}: 无响应 no answer in 15 s`
        : `${url}: 无法连接 cannot reach the node`);
    }
    const type = r.headers.get("Content-Type") || "";
    if (!type.includes("json")) throw new Error(`${url}: HTTP ${r.status}`);
    return r.json();
  };
  const list = $("plugins");
  try {
    const [health, api] = await Promise.all([getJSON("/healthz"), getJSON("/api")]);
    $("node").textContent = `${health.node} · 区划代码 ${health.region_code} · v${health.version}`;
    list.replaceChildren();
    if (!health.plugins.length) {
      list.append(el("li", "", "未启用任何功能 No plugins enabled (conf/zhengtong.conf: plugins = { ... })."));
    }
    for (const p of health.plugins) {
      const li = el("li");
      li.append(el("div", "name", p.name));
      li.append(el("div", `meta state-${p.state}`, `${p.kind} plugin · v${p.version} · ${p.state}`));
      const routes = el("div", "routes");
      for (const r of api.routes.filter((r) => r.plugin === p.name)) {
        // a link only where a browser gets a page without signing in or filling anything
        // in: public GET routes without parameters; the rest are listed with who may call
        const open = r.method === "GET" && r.role === "public" && !r.path.includes(":") &&
          !r.path.includes("*") && !(r.summary || "").includes("?");
        if (open) {
          const a = el("a", "", `${r.method} ${r.path}`);
          a.href = r.path;
          if (r.summary) a.title = r.summary;
          routes.append(a);
        } else {
          const who = r.role === "public" ? "" : r.role === "user" ? " · 需登录 sign-in" : ` · ${r.role}`;
          const s = el("span", "meta", `${r.method} ${r.path}${who}  `);
          if (r.summary) s.title = r.summary;
          routes.append(s);
        }
      }
      li.append(routes);
      list.append(li);
    }
  } catch (e) {
    // said where the reader was told to wait (the list), not only in the header; the list
    // is a live region, so a screen reader hears it too
    list.replaceChildren(el("li", "error", `未能加载 Could not load the functions: ${e.message}. ` +
      "请稍后刷新 Reload the page later."));
  } finally {
    list.removeAttribute("aria-busy");
  }
})();
