from asyncjobs.cli import main

main()
