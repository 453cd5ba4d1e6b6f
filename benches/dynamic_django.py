#!/usr/bin/env python3
"""kiln's dynamic routes vs Django on the same SQLite database, under wrk.

Both serve the demo's catalogue: an uncached JSON read of one product
(`/api/products/42`: one query per request) and a cached product page
(`/catalogue/42`: two queries and a template on a miss; kiln's route cache,
Django's `cache_page` with the in-memory LocMemCache). Django runs under
gunicorn with one sync worker and no middleware (its leanest setup); kiln
with one worker. Each server is pinned to CPU 1, wrk (`-t1 -c32`) to CPU 0,
rounds interleaved, medians reported.

Usage: benches/dynamic_django.py [ROUNDS] [SECONDS]   (default 3 rounds of 5 s)
Needs: wrk; Django and gunicorn are installed into a venv under the scratch
directory on first use.
"""
import os
import statistics
import subprocess
import sys
import textwrap
import time

from common import SCRATCH, kiln_binary
import dynamic_routes
from serve_static import SERVER_CPU, wrk
from common import wait_for_port

KILN_PORT, DJANGO_PORT = 18094, 18095
CASES = {"uncached JSON": "/api/products/42", "cached page": "/catalogue/42"}
VENV = SCRATCH / "django-venv"

SETTINGS = """
SECRET_KEY = "bench-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "urls"
INSTALLED_APPS = []
MIDDLEWARE = []
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": %r}}
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "DIRS": [%r]}]
USE_TZ = True
"""

URLS = '''
from django.db import connection
from django.http import JsonResponse, Http404
from django.shortcuts import render
from django.urls import path
from django.views.decorators.cache import cache_page

COLUMNS = ["id", "name", "origin", "process", "grams", "price_cents", "stock"]

def product_json(request, id):
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, name, origin, process, grams, price_cents, stock FROM products WHERE id = %s", [id])
        row = cursor.fetchone()
    if row is None:
        raise Http404
    return JsonResponse({"product": dict(zip(COLUMNS, row))})

@cache_page(60)
def product_page(request, id):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT p.id, p.name, p.origin, p.process, p.grams, p.price_cents, p.stock, c.name, c.slug "
            "FROM products p JOIN categories c ON c.id = p.category_id WHERE p.id = %s", [id])
        row = cursor.fetchone()
        if row is None:
            raise Http404
        cursor.execute(
            "SELECT s.id, s.grams, s.price_cents FROM products p JOIN products s "
            "ON s.origin = p.origin AND s.process = p.process AND s.category_id = p.category_id "
            "WHERE p.id = %s ORDER BY s.grams", [id])
        sizes = cursor.fetchall()
    product = dict(zip(COLUMNS + ["roast", "roast_slug"], row))
    return render(request, "product.html", {"product": product, "sizes": sizes})

urlpatterns = [
    path("api/products/<int:id>", product_json),
    path("catalogue/<int:id>", product_page),
]
'''

TEMPLATE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{{ product.name }}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head><body>
<header><a href="/">Orbital Coffee</a><nav><a href="/gallery/">Gallery</a> <a href="/catalogue/">Catalogue</a>
<a href="/guestbook/">Guestbook</a> <a href="/blog/">Journal</a> <a href="/about/">About</a></nav></header>
<main><p><a href="/catalogue/?roast={{ product.roast_slug }}">{{ product.roast }}</a></p>
<h1>{{ product.name }}</h1><dl><dt>Origin</dt><dd>{{ product.origin }}</dd><dt>Process</dt><dd>{{ product.process }}</dd>
<dt>Bag</dt><dd>{{ product.grams }} g</dd><dt>Price</dt><dd>{{ product.price_cents }}</dd><dt>Stock</dt><dd>{{ product.stock }}</dd></dl>
<h2>Other sizes</h2><ul>{% for size in sizes %}<li><a href="/catalogue/{{ size.0 }}">{{ size.1 }} g, {{ size.2 }}</a></li>{% endfor %}</ul>
</main><footer><p>Roasted in small batches, shipped across the solar system.</p></footer></body></html>
"""


def django_project(root):
    project = root / "django"
    (project / "templates").mkdir(parents=True, exist_ok=True)
    (project / "settings.py").write_text(SETTINGS % (str(root / "data/site.db"), str(project / "templates")))
    (project / "urls.py").write_text(URLS)
    (project / "templates/product.html").write_text(TEMPLATE)
    return project


def ensure_django():
    python = VENV / "bin/python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    if subprocess.run([str(python), "-c", "import django, gunicorn"], capture_output=True).returncode:
        subprocess.run([str(python), "-m", "pip", "install", "-q", "django", "gunicorn"], check=True)
    return VENV / "bin/gunicorn"


def start_kiln(root):
    return subprocess.Popen(
        SERVER_CPU + [str(KILN), "serve", "--root", str(root), "--no-build", "--workers", "1",
                      "--addr", f"127.0.0.1:{KILN_PORT}", "--set", "database.slow_query_ms=0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_django(gunicorn, project):
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="settings", PYTHONPATH=str(project))
    return subprocess.Popen(
        SERVER_CPU + [str(gunicorn), "-w", "1", "-k", "sync", "-b", f"127.0.0.1:{DJANGO_PORT}",
                      "--log-level", "warning", "django.core.wsgi:get_wsgi_application()"],
        cwd=project, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main():
    global KILN
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    seconds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    KILN = kiln_binary()
    gunicorn = ensure_django()
    root = SCRATCH / "dynamic-django-site"
    dynamic_routes.KILN = KILN
    dynamic_routes.make_site(root)
    # kiln creates and migrates the database the two servers share.
    server = start_kiln(root)
    wait_for_port(KILN_PORT)
    server.terminate()
    server.wait()
    project = django_project(root)
    results = {}
    for _ in range(rounds):
        for name, start, port in [("kiln", lambda: start_kiln(root), KILN_PORT),
                                  ("django", lambda: start_django(gunicorn, project), DJANGO_PORT)]:
            server = start()
            try:
                wait_for_port(port)
                time.sleep(0.5)
                for case, path in CASES.items():
                    result = wrk(port, path, seconds, ["Accept-Encoding: gzip"])
                    if result["errors"]:
                        sys.exit(f"{name} {case}: {result['errors']} error responses")
                    results.setdefault((case, name), []).append(result)
            finally:
                server.terminate()
                server.wait()
    print(f"kiln vs Django (gunicorn, 1 sync worker), {rounds} rounds of {seconds} s, wrk -t1 -c32, medians")
    print(f"{'case':<14} {'kiln req/s':>11} {'p99 ms':>7} {'django req/s':>13} {'p99 ms':>7} {'ratio':>7}")
    for case in CASES:
        kiln = results[(case, "kiln")]
        django = results[(case, "django")]
        k_rps = statistics.median(r["rps"] for r in kiln)
        d_rps = statistics.median(r["rps"] for r in django)
        k_p99 = statistics.median(r["p99_ms"] for r in kiln)
        d_p99 = statistics.median(r["p99_ms"] for r in django)
        print(f"{case:<14} {k_rps:>11.0f} {k_p99:>7.2f} {d_rps:>13.0f} {d_p99:>7.2f} {k_rps / d_rps:>6.1f}x")


if __name__ == "__main__":
    main()
