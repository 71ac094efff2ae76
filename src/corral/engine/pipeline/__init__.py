"""Pipeline runs: a commit of the followed branch taken through build, test, deploy, smoke
and promote stages (source.py: git; runs.py: the run records; stages.py: each stage;
run.py: a run; watch.py: following the branch)."""
