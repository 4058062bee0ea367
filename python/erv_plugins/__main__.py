from erv_plugins.cli import main

main()
