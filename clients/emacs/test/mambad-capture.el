;;; mambad-capture.el --- Print what mambad-mode shows after typing  -*- lexical-binding: t -*-

;;; Commentary:

;; For the README's capture: types $MAMBAD_TYPE into a buffer with `mambad-mode' on and
;; prints the buffer with the ghost text (the overlay's after-string) marked ‹like this›.
;;   MAMBAD_SOCKET=... emacs -Q --batch -L clients/emacs -l clients/emacs/test/mambad-capture.el

;;; Code:

(require 'mambad)

(let ((mambad-max-tokens 16)
      (typed (or (getenv "MAMBAD_TYPE") "def fibonacci(n):")))
  (switch-to-buffer (get-buffer-create "capture.py"))
  (mambad-mode 1)
  (execute-kbd-macro typed)
  (let ((deadline (+ (float-time) 30)))
    (while (and (not (plist-get (mambad-suggestion) :done)) (< (float-time) deadline))
      (accept-process-output nil 0.01)))
  (let* ((overlay (seq-find (lambda (o) (overlay-get o 'mambad)) (overlays-in (point-min) (point-max))))
         (ghost (substring-no-properties (overlay-get overlay 'after-string))))
    (princ (format "$ emacs  # M-x mambad-mode, typed %S, waited %s s\n" typed mambad-debounce))
    (princ (concat (buffer-substring-no-properties (point-min) (point)) "‹" ghost "›"
                   (buffer-substring-no-properties (point) (point-max)) "\n"))
    (princ "-U:**-  capture.py   All L1   (Fundamental Mamba)   (‹…› = ghost text, face mambad-suggestion-face; TAB accepts)\n")))

;;; mambad-capture.el ends here
