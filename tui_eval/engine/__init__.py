"""Running an evaluation for a config: preparing it (preparation), deciding what a results
directory already holds (resume), tuning the batch size for it (tuning), the run itself
(evaluation) over its task (tasks: generation, choice), several runs at once for the speed
table (bench), and stopping a run cleanly on a signal (signals). Front ends call in here;
nothing here knows about them."""
