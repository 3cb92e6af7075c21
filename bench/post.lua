-- post.lua: wrk script that sends every request as a POST with a small JSON body.
wrk.method = "POST"
wrk.body = "{}"
wrk.headers["Content-Type"] = "application/json"
