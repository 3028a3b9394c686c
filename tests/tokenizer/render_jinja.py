#!/usr/bin/python3
"""The chat-template oracle: renders a template with Python's jinja2, configured
exactly as Hugging Face transformers does (transformers/utils/chat_template_utils.py,
_compile_jinja_template):

    ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                  extensions=[AssistantTracker, jinja2.ext.loopcontrols])
    filters["tojson"]          = json.dumps(x, ensure_ascii=False, indent=, separators=, sort_keys=)
    globals["raise_exception"] = raise TemplateError(message)
    globals["strftime_now"]    = datetime.now().strftime(format)

Usage: render_jinja.py TEMPLATE_FILE CONTEXTS_JSON_FILE
       render_jinja.py --snippets SNIPPETS_JSON_FILE

CONTEXTS_JSON_FILE holds a JSON list of contexts (objects of template variables).
A context may carry "__now__": a Unix time that strftime_now uses instead of the
clock (local time, as datetime.fromtimestamp), so that outputs are deterministic.

Prints one JSON list (ASCII-only) with one object per context:
    {"ok": "rendered text"}             rendered
    {"raise": "message"}                the template called raise_exception(message)
    {"error": "ExcType: message"}       any other jinja2 / Python error
A template that does not compile gives {"error": ...} for every context.

With --snippets the file holds a JSON list of {"template": TEXT, "context": {...}}
and each is compiled and rendered on its own (one result per snippet).
"""
import json
import sys
from datetime import datetime

import jinja2
import jinja2.ext
from jinja2 import nodes
from jinja2.ext import Extension
from jinja2.sandbox import ImmutableSandboxedEnvironment


class AssistantTracker(Extension):
    # transformers' {% generation %}...{% endgeneration %} tag; the body renders as is.
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return nodes.CallBlock(self.call_method("_render", []), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


class RaisedByTemplate(Exception):
    pass


def make_env(now_box):

    def raise_exception(message):
        raise RaisedByTemplate(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    def strftime_now(fmt):
        now = datetime.fromtimestamp(now_box[0]) if now_box[0] is not None else datetime.now()
        return now.strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[AssistantTracker, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def render_all(env, now_box, source, contexts):
    results = []
    try:
        template = env.from_string(source)
    except Exception as e:  # noqa: BLE001 - every failure is reported
        results = [{"error": "%s: %s" % (type(e).__name__, e)} for _ in contexts]
        template = None
    if template is not None:
        for ctx in contexts:
            ctx = dict(ctx)
            now_box[0] = ctx.pop("__now__", None)
            try:
                results.append({"ok": template.render(**ctx)})
            except RaisedByTemplate as e:
                results.append({"raise": str(e)})
            except Exception as e:  # noqa: BLE001
                results.append({"error": "%s: %s" % (type(e).__name__, e)})
    return results


def main():
    now_box = [None]
    env = make_env(now_box)
    if sys.argv[1] == "--snippets":
        with open(sys.argv[2], "rb") as f:
            snippets = json.loads(f.read().decode("utf-8"))
        results = [render_all(env, now_box, s["template"], [s.get("context", {})])[0] for s in snippets]
    else:
        with open(sys.argv[1], "rb") as f:
            source = f.read().decode("utf-8")
        with open(sys.argv[2], "rb") as f:
            contexts = json.loads(f.read().decode("utf-8"))
        results = render_all(env, now_box, source, contexts)
    sys.stdout.write(json.dumps(results, ensure_ascii=True))
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
