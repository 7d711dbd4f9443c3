from __future__ import annotations

from fastpush.cli import main

raise SystemExit(main())
