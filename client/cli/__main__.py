from client.cli.fast import main

main()
