;; The gear-hash scan of the content-defined chunker (docs/FORMAT.md, "Chunks and ids"): the readable source
;; of the bytes in src/generated/gear-wasm.ts (regenerate with `node scripts/gen-gear-wasm.mjs`; a test
;; assembles this file and compares). It scans the batch slots where they lie, in the shared memory of
;; batch-slots.ts, with the gear table (256 signed 32-bit values) at offset 0.
;;
;; cut(start, end, min, avg, max, maskHard, maskEasy) -> the end of the chunk that begins at `start`:
;;   the hash starts at 0; for each byte at chunk offset i >= min (memory[start + i], before `end`):
;;   h = (h << 1) + GEAR[byte]; cut after it when h & (i < avg ? maskHard : maskEasy) == 0;
;;   returns start + max when no byte cut before; -1 when `end` came first.
;; Each scan hashes four bytes a round while four remain before its limit, then one at a time.
(module
  (import "env" "memory" (memory 1 65536 shared))
  (func (export "cut")
    (param $start i32) (param $end i32) (param $min i32) (param $avg i32) (param $max i32)
    (param $maskHard i32) (param $maskEasy i32)
    (result i32)
    (local $i i32) ;; the memory offset of the next byte
    (local $h i32) ;; the gear hash
    (local $limit i32) ;; where the current scan stops
    (local.set $i (i32.add (local.get $start) (local.get $min)))

    ;; Below avg, cut under the hard mask. limit = min(end, start + avg), unsigned.
    (local.set $limit
      (select
        (local.get $end)
        (i32.add (local.get $start) (local.get $avg))
        (i32.lt_u (local.get $end) (i32.add (local.get $start) (local.get $avg)))))
    (block
      (loop
        (br_if 1 (i32.gt_u (i32.add (local.get $i) (i32.const 4)) (local.get $limit)))
        (if (i32.eqz (i32.and (local.tee $h (i32.add (i32.shl (local.get $h) (i32.const 1))
              (i32.load (i32.shl (i32.load8_u offset=0 (local.get $i)) (i32.const 2))))) (local.get $maskHard)))
          (then (return (i32.add (local.get $i) (i32.const 1)))))
        (if (i32.eqz (i32.and (local.tee $h (i32.add (i32.shl (local.get $h) (i32.const 1))
              (i32.load (i32.shl (i32.load8_u offset=1 (local.get $i)) (i32.const 2))))) (local.get $maskHard)))
          (then (return (i32.add (local.get $i) (i32.const 2)))))
        (if (i32.eqz (i32.and (local.tee $h (i32.add (i32.shl (local.get $h) (i32.const 1))
              (i32.load (i32.shl (i32.load8_u offset=2 (local.get $i)) (i32.const 2))))) (local.get $maskHard)))
          (then (return (i32.add (local.get $i) (i32.const 3)))))
        (if (i32.eqz (i32.and (local.tee $h (i32.add (i32.shl (local.get $h) (i32.const 1))
              (i32.load (i32.shl (i32.load8_u offset=3 (local.get $i)) (i32.const 2))))) (local.get $maskHard)))
          (then (return (i32.add (local.get $i) (i32.const 4)))))
        (local.set $i (i32.add (local.get $i) (i32.const 4)))
        (br 0)))
    (block
      (loop
        (br_if 1 (i32.ge_u (local.get $i) (local.get $limit)))
        (if (i32.eqz (i32.and (local.tee $h (i32.add (i32.shl (local.get $h) (i32.const 1))
              (i32.load (i32.shl (i32.load8_u offset=0 (local.get $i)) (i32.const 2))))) (local.get $maskHard)))
          (then (return (i32.add (local.get $i) (i32.const 1)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br 0)))

    ;; From avg to max, cut under the easy mask. limit = min(end, start + max), unsigned.
    (local.set $limit
      (select
        (local.get $end)
        (i32.add (local.get $start) (local.get $max))
        (i32.lt_u (local.get $end) (i32.add (local.get $start) (local.get $max)))))
    (block
      (loop
        (br_if 1 (i32.gt_u (i32.add (local.get $i) (i32.const 4)) (local.get $limit)))
        (if (i32.eqz (i32.and (local.tee $h (i32.add (i32.shl (local.get $h) (i32.const 1))
              (i32.load (i32.shl (i32.load8_u offset=0 (local.get $i)) (i32.const 2))))) (local.get $maskEasy)))
          (then (return (i32.add (local.get $i) (i32.const 1)))))
        (if (i32.eqz (i32.and (local.tee $h (i32.add (i32.shl (local.get $h) (i32.const 1))
              (i32.load (i32.shl (i32.load8_u offset=1 (local.get $i)) (i32.const 2))))) (local.get $maskEasy)))
          (then (return (i32.add (local.get $i) (i32.const 2)))))
        (if (i32.eqz (i32.and (local.tee $h (i32.add (i32.shl (local.get $h) (i32.const 1))
              (i32.load (i32.shl (i32.load8_u offset=2 (local.get $i)) (i32.const 2))))) (local.get $maskEasy)))
          (then (return (i32.add (local.get $i) (i32.const 3)))))
        (if (i32.eqz (i32.and (local.tee $h (i32.add (i32.shl (local.get $h) (i32.const 1))
              (i32.load (i32.shl (i32.load8_u offset=3 (local.get $i)) (i32.const 2))))) (local.get $maskEasy)))
          (then (return (i32.add (local.get $i) (i32.const 4)))))
        (local.set $i (i32.add (local.get $i) (i32.const 4)))
        (br 0)))
    (block
      (loop
        (br_if 1 (i32.ge_u (local.get $i) (local.get $limit)))
        (if (i32.eqz (i32.and (local.tee $h (i32.add (i32.shl (local.get $h) (i32.const 1))
              (i32.load (i32.shl (i32.load8_u offset=0 (local.get $i)) (i32.const 2))))) (local.get $maskEasy)))
          (then (return (i32.add (local.get $i) (i32.const 1)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br 0)))

    ;; No cut: start + max when the scan reached max, -1 when it ran out at `end` first.
    (select
      (local.get $i)
      (i32.const -1)
      (i32.eq (local.get $i) (i32.add (local.get $start) (local.get $max))))))
