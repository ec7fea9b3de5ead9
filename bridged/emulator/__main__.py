from bridged.emulator.main import main

raise SystemExit(main())
