from bridged.cli import main

raise SystemExit(main())
