"""Board (督办看板): the supervision pages and the weekly 督查通报, rendered from the other services' read APIs."""
