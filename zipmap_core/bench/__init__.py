"""Every `zipmap bench` command, in one room: `cli.py` holds the registry (name -> runner), and each
benchmark lives in its own module (micro: scaling, query latency, generator, Newton-Schulz, the
full configuration; pipeline: from file to scene; distributed: split runs; gpu: the full model
as the authors time theirs). The README's figures come from these, rerunnable by anyone."""
