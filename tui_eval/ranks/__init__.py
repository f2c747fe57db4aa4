"""A run of several processes (torchrun, or ``--gpus N``): the processes and what they
exchange (world), rank 0's sum of the ranks' progress (rank_board), the launcher (launch),
and each process's part in a run (coordinator: alone, rank 0, or another rank). The only
package that imports torch.distributed."""
