"""Running and reporting: the command line, profiles, the papermill runner and pipeline, the run record and
folder, the plan, the report page, the run inputs of notebooks 05-07, the case study, trainings, tuning and
benchmarks."""
