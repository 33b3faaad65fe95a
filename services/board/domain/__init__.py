"""The board's domain: what each page and export shows, computed from the read APIs' answers as plain data
(no HTTP, no database), so every figure on the board can be tested on its own."""
