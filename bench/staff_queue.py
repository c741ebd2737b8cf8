"""How long the staff page takes with a long call-back queue. Run by hand, never as a test:

    .venv/bin/python -m bench.staff_queue            # 500 open requests, 14 days of usage
    .venv/bin/python -m bench.staff_queue 5000

Target: the page renders in well under a second with 500 open requests on the 2-core CI machine.
"""

from __future__ import annotations

import datetime as dt
import statistics
import sys
import tempfile
import time
from pathlib import Path

from ivr import create_app
from ivr.services import services
from ivr.storage import Storage, Use, callback_requests
from ivr.web.staff import hash_password

PASSWORD = "benchmark password 1234"


def main(open_requests: int = 500, rounds: int = 15) -> None:
    """Fill a fresh SQLite database, sign in, and time GET /staff/."""
    with tempfile.TemporaryDirectory() as folder:
        database_url = f"sqlite:///{Path(folder) / 'bench.sqlite3'}"
        release_step = Storage(database_url, "bench")  # as `flask --app ivr db upgrade` does
        release_step.migrate()
        release_step.dispose()
        app = create_app(
            {
                "DATABASE_URL": database_url,
                "SECRET_KEY": "bench",
                "TWILIO_AUTH_TOKEN": "bench",
                "PUBLIC_BASE_URL": "https://line.example.org",
                "TESTING": True,
            }
        )
        now = dt.datetime.now(dt.UTC)
        with app.app_context():
            storage = services().storage
            storage.create_staff_user("bench", hash_password(PASSWORD))
            rows = [
                {
                    "created_at": now - dt.timedelta(minutes=i),
                    "channel": "voice" if i % 3 else "sms",
                    "kind": "voicemail" if i % 3 else "callback",
                    "phone": f"+1555{i:07d}",
                    "topic": "hospice",
                    "lang": "en",
                    "urgent": i % 17 == 0,
                    "recording_sid": f"RE{i:032x}" if i % 3 else None,
                    "recording_url": None,
                    "recording_seconds": 30 if i % 3 else None,
                    "note": "",
                    "status": "open",
                }
                for i in range(open_requests)
            ]
            with storage.engine.begin() as connection:
                connection.execute(callback_requests.insert(), rows)
            for day in range(14):
                for section in services().content.section_ids:
                    storage.add_uses([Use(now.date() - dt.timedelta(days=day), "voice", section)])
        client = app.test_client()
        page = client.get("/staff/login").get_data(as_text=True)
        token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        client.post("/staff/login", data={"username": "bench", "password": PASSWORD, "csrf_token": token})
        timings = []
        for _ in range(rounds):
            start = time.perf_counter()
            response = client.get("/staff/")
            timings.append(time.perf_counter() - start)
            assert response.status_code == 200
        print(
            f"GET /staff/ with {open_requests} open requests: median {statistics.median(timings) * 1000:.0f} ms, "
            f"max {max(timings) * 1000:.0f} ms, page {len(response.data) / 1024:.0f} KiB"
        )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 500)
