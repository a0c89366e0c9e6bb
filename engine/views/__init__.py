"""The read side: runs, logs, run pages, stats and paging, as front ends show them."""
