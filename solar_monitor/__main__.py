from solar_monitor.cli import main

raise SystemExit(main())
