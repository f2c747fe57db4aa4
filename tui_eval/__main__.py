from tui_eval.cli import main

raise SystemExit(main())
