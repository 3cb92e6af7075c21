// The landing page: the node's name and its enabled plugins, each with links to its routes.
(async function () {
  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  };
  try {
    const [health, api] = await Promise.all([
      fetch("/healthz").then((r) => r.json()),
      fetch("/api").then((r) => r.json()),
    ]);
    $("node").textContent = `${health.node} · 区划代码 ${health.region_code} · v${health.version}`;
    const list = $("plugins");
    list.replaceChildren();
    if (!health.plugins.length) list.append(el("li", "", "No plugins enabled (see conf/zhengtong.conf)."));
    for (const p of health.plugins) {
      const li = el("li");
      li.append(el("div", "name", p.name));
      li.append(el("div", `meta state-${p.state}`, `${p.kind} plugin · v${p.version} · ${p.state}`));
      const routes = el("div", "routes");
      for (const r of api.routes.filter((r) => r.plugin === p.name)) {
        if (r.method === "GET" && !r.path.includes(":") && !r.path.includes("*")) {
          const a = el("a", "", `${r.method} ${r.path}`);
          a.href = r.path;
          routes.append(a);
        } else {
          routes.append(el("span", "meta", `${r.method} ${r.path}  `));
        }
      }
      li.append(routes);
      list.append(li);
    }
  } catch (e) {
    $("node").textContent = "The node did not answer: " + e;
  }
})();
