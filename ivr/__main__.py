"""`python -m ivr` (what `make run` starts): serve the line on this machine, on SQLite, in local mode."""

from __future__ import annotations

import os

from ivr import create_app


def main() -> None:
    """Serve the line at http://127.0.0.1:5000 (PORT to change) and print the two webhook URLs."""
    port = int(os.environ.get("PORT", "5000"))
    app = create_app()
    base = f"http://127.0.0.1:{port}"
    print(f"CareLine is serving on {base}")
    print(f"  Voice webhook (Twilio: 'A call comes in'):    POST {base}/voice")
    print(f"  SMS webhook   (Twilio: 'A message comes in'): POST {base}/sms")
    database = app.config["DATABASE_URL"]
    print(f"  Database: {database.split('///')[-1] if database.startswith('sqlite') else 'from DATABASE_URL'}")
    app.run(host="127.0.0.1", port=port, debug=False, use_reloader=False)


if __name__ == "__main__":
    main()
