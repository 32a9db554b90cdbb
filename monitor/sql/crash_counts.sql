-- Crashes per server, kind and signature, with the newest crash time (POSIX seconds when known).
-- Reads: crashes.
SELECT server, COALESCE(kind, 'unknown'), COALESCE(signature, 'none'), COUNT(*),
       MAX(COALESCE(exit_time, 0)), MAX(time)
FROM crashes GROUP BY server, kind, signature
