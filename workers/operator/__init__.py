"""What an operator reads and does, behind `orderctl`: an order's story, the stuck ones, retries, dead letters."""
