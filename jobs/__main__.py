from jobs.cli import program

program()
