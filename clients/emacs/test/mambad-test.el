;;; mambad-test.el --- ERT tests of mambad.el against a real daemon  -*- lexical-binding: t -*-

;;; Commentary:

;; The daemon's socket is $MAMBAD_SOCKET; it is started with --max-active 1, so a test
;; can keep a request queued behind one of its own.  $MAMBAD_BIN and $MAMBAD_MODEL let
;; the reconnect test start a daemon of its own.  Run:
;;   emacs -Q --batch -L clients/emacs -l clients/emacs/test/mambad-test.el \
;;     -f ert-run-tests-batch-and-exit

;;; Code:

(require 'ert)
(require 'mambad)

(defvar mambad-test-socket (or (getenv "MAMBAD_SOCKET") (error "MAMBAD_SOCKET is not set")))

(defun mambad-test--wait (what predicate &optional timeout)
  "Run timers and process output until PREDICATE returns non-nil (WHAT names it)."
  (let ((deadline (+ (float-time) (or timeout 30))) value)
    (while (not (setq value (funcall predicate)))
      (when (> (float-time) deadline) (ert-fail (format "timed out waiting for %s" what)))
      (accept-process-output nil 0.01))
    value))

(defun mambad-test--pause (seconds)
  (let ((end (+ (float-time) seconds)))
    (while (< (float-time) end) (accept-process-output nil 0.005))))

;;;; A connection of the test's own, independent of mambad.el's.

(defun mambad-test--connect (&optional path)
  (let ((proc (make-network-process :name "mambad-test" :family 'local :service (or path mambad-test-socket)
                                    :coding 'utf-8-unix :noquery t)))
    (process-put proc :partial "")
    (process-put proc :messages nil)
    (set-process-filter proc (lambda (p out)
                               (let ((lines (split-string (concat (process-get p :partial) out) "\n")))
                                 (process-put p :partial (car (last lines)))
                                 (dolist (line (butlast lines))
                                   (process-put p :messages (append (process-get p :messages)
                                                                    (list (json-parse-string line :object-type 'plist :array-type 'list))))))))
    proc))

(defun mambad-test--send (proc method params &optional id)
  (process-send-string proc (concat (json-serialize (append (list :jsonrpc "2.0" :method method :params params)
                                                            (and id (list :id id))))
                                    "\n")))

(defun mambad-test--receive (proc predicate what)
  (mambad-test--wait what (lambda ()
                            (let ((found (seq-find predicate (process-get proc :messages))))
                              (when found (process-put proc :messages (delq found (process-get proc :messages))))
                              found))))

(defun mambad-test--call (method &optional params path)
  "The result of METHOD, asked on a fresh connection."
  (let ((proc (mambad-test--connect path)))
    (unwind-protect
        (progn
          (mambad-test--send proc method (or params (make-hash-table)) 1)
          (let ((reply (mambad-test--receive proc (lambda (m) (eql (plist-get m :id) 1)) (format "%s reply" method))))
            (should-not (plist-get reply :error))
            (plist-get reply :result)))
      (delete-process proc))))

(defun mambad-test--reference (prompt &optional max-tokens multi-line)
  "The daemon's greedy completion of PROMPT, asked by the test itself."
  (let ((text (plist-get (mambad-test--call "complete" (list :prompt prompt :maxTokens (or max-tokens 12)
                                                             :singleLine (if multi-line :false t) :temperature 0))
                         :text)))
    (should-not (string-empty-p text))
    text))

(defun mambad-test--requests () (plist-get (mambad-test--call "status") :requests))

;;;; Driving a buffer

(defmacro mambad-test--with-buffer (settings &rest body)
  "Run BODY in a fresh buffer shown in the selected window, with `mambad-mode' on.
SETTINGS are `let' bindings over these defaults."
  (declare (indent 1))
  `(let ((mambad-socket mambad-test-socket) (mambad-debounce 0.06) (mambad-max-tokens 12)
         (mambad-single-line t) (mambad-stream t) (mambad-context-chars 6000))
     (let ,settings
       (let ((buffer (generate-new-buffer "mambad-test")))
         (switch-to-buffer buffer)
         (unwind-protect (progn (mambad-mode 1) ,@body)
           (mambad-mode -1)
           (kill-buffer buffer))))))

(defun mambad-test--type (keys)
  "Type KEYS (a string of characters, or a `kbd' vector) as commands."
  (execute-kbd-macro keys)
  (mambad-test--pause 0.01))

(defun mambad-test--suggestion (&optional what)
  (mambad-test--wait (or what "a finished suggestion")
                     (lambda () (let ((s (mambad-suggestion))) (and s (plist-get s :done) s)))))

(defun mambad-test--ghost ()
  "The ghost text drawn at point (the overlay's after-string), or nil."
  (let ((overlays (seq-filter (lambda (o) (overlay-get o 'mambad)) (overlays-in (point-min) (point-max)))))
    (when overlays
      (should (= 1 (length overlays)))
      (should (= (point) (overlay-start (car overlays))))
      (substring-no-properties (overlay-get (car overlays) 'after-string)))))

(defun mambad-test--logged (line) (member line mambad-log))

;;;; Tests

(ert-deftest mambad-ghost-text-is-the-completion-and-tab-accepts-it ()
  (mambad-test--with-buffer ()
    (mambad-test--type "def fibonacci(n):")
    (let ((expected (mambad-test--reference "def fibonacci(n):")))
      (should (equal expected (plist-get (mambad-test--suggestion) :text)))
      (should (equal expected (mambad-test--ghost)))
      (mambad-test--type (kbd "TAB"))
      (should (equal (concat "def fibonacci(n):" expected) (buffer-string)))
      (should (= (point) (point-max)))
      ;; the accept was an edit: the continuation is asked for
      (should (equal (mambad-test--reference (buffer-string)) (plist-get (mambad-test--suggestion) :text))))))

(ert-deftest mambad-multi-line-accept-line-word-and-all ()
  (mambad-test--with-buffer ((mambad-single-line nil) (mambad-max-tokens 16))
    (insert "def fibonacci(n):\n   ")
    (mambad-test--type " ")
    (let* ((prompt "def fibonacci(n):\n    ")
           (expected (mambad-test--reference prompt 16 t))
           (accepted (mambad--part expected 'line)))
      (should (string-match-p "\n" expected))
      (should (equal expected (plist-get (mambad-test--suggestion) :text)))
      (should (equal expected (mambad-test--ghost)))
      (mambad-test--type (kbd "M-e"))
      (should (equal (concat prompt accepted) (buffer-string)))
      (should (equal (substring expected (length accepted)) (mambad-test--ghost)))
      (let ((word (mambad--part (substring expected (length accepted)) 'word)))
        (should (string-match-p "[[:alnum:]]" word))
        (setq accepted (concat accepted word)))
      (mambad-test--type (kbd "M-f"))
      (should (equal (concat prompt accepted) (buffer-string)))
      (should (equal (substring expected (length accepted)) (plist-get (mambad-suggestion) :text)))
      (mambad-test--type (kbd "TAB"))
      (should (equal (concat prompt expected) (buffer-string))))))

(ert-deftest mambad-dismiss-and-moving-point-clear-the-ghost-text ()
  (mambad-test--with-buffer ()
    (mambad-test--type "hello")
    (mambad-test--suggestion)
    (should (eq (key-binding (kbd "TAB")) #'mambad-accept))
    (mambad-test--type (kbd "C-g"))
    (should-not (mambad-test--ghost))
    (should-not (mambad-suggestion))
    (should (equal "hello" (buffer-string)))
    (should-not (eq (key-binding (kbd "TAB")) #'mambad-accept))
    (mambad-test--type "!")
    (mambad-test--suggestion)
    (let ((requests (plist-get mambad-stats :requests)))
      (mambad-test--type (kbd "C-b"))
      (should-not (mambad-test--ghost))
      (mambad-test--pause 0.3)
      (should (= requests (plist-get mambad-stats :requests))) ; moving point asks for nothing
      (mambad-request-suggestion)
      (should (equal (mambad-test--reference "hello") (plist-get (mambad-test--suggestion) :text))))))

(ert-deftest mambad-keystrokes-within-the-debounce-send-one-request ()
  (mambad-test--with-buffer ((mambad-debounce 0.4))
    (let ((requests (plist-get mambad-stats :requests))
          (shown (plist-get mambad-stats :shown)))
      (dolist (ch '("w" "h" "i" "l" "e"))
        (mambad-test--type ch)
        (mambad-test--pause 0.025))
      (should (equal (mambad-test--reference "while") (plist-get (mambad-test--suggestion) :text)))
      (should (= (1+ requests) (plist-get mambad-stats :requests)))
      (should (= (1+ shown) (plist-get mambad-stats :shown))))))

(ert-deftest mambad-typing-over-a-queued-request-cancels-it ()
  (mambad-test--with-buffer ()
    ;; the daemon admits one request at a time: hold it with a long one
    (let ((blocker (mambad-test--connect))
          (before (mambad-test--requests))
          (stats (copy-sequence mambad-stats)))
      (unwind-protect
          (progn
            (mambad-test--send blocker "complete" '(:tokens [1 2 3] :maxTokens 8000 :stream t :cache :false) 7)
            (mambad-test--receive blocker (lambda (m) (equal (plist-get m :method) "complete/progress")) "the blocker")
            (mambad-test--type "abc")
            (mambad-test--wait "the request for abc queued"
                               (lambda () (and (= (plist-get mambad-stats :requests) (1+ (plist-get stats :requests)))
                                               (= 1 (plist-get (mambad-test--requests) :queued)))))
            (let ((first (1- mambad--next-id)))
              (mambad-test--type "d")
              (should (mambad-test--logged (format "-> $/cancelRequest #%d" first)))
              (mambad-test--wait "its -32800" (lambda () (mambad-test--logged (format "<- #%d cancelled" first)))))
            (mambad-test--wait "the request for abcd queued"
                               (lambda () (= 1 (plist-get (mambad-test--requests) :queued))))
            (should-not (mambad-suggestion))
            (mambad-test--send blocker "$/cancelRequest" '(:id 7))
            (should (eql -32800 (plist-get (plist-get (mambad-test--receive blocker (lambda (m) (eql (plist-get m :id) 7)) "blocker reply") :error) :code))))
        (delete-process blocker))
      (should (equal (mambad-test--reference "abcd") (plist-get (mambad-test--suggestion) :text)))
      (should (= (+ 2 (plist-get before :cancelled)) (plist-get (mambad-test--requests) :cancelled)))
      (should (= (1+ (plist-get stats :cancelled-replies)) (plist-get mambad-stats :cancelled-replies)))
      (should (= (1+ (plist-get stats :shown)) (plist-get mambad-stats :shown))))))

(ert-deftest mambad-typing-over-a-streaming-completion-stops-it ()
  (mambad-test--with-buffer ((mambad-debounce 0.3) (mambad-max-tokens 4000) (mambad-single-line nil))
    (let ((before (mambad-test--requests))
          (shown (plist-get mambad-stats :shown)))
      (mambad-test--type "for")
      (mambad-test--wait "part of the long completion shown"
                         (lambda () (let ((s (mambad-suggestion))) (and s (mambad-test--ghost)))))
      (should-not (plist-get (mambad-suggestion) :done))
      (let ((long (1- mambad--next-id)))
        (setq mambad-max-tokens 12)
        (mambad-test--type "m")
        (should-not (mambad-test--ghost))
        (should-not (mambad-suggestion))
        (should (equal (mambad-test--reference "form" 12 t) (plist-get (mambad-test--suggestion) :text)))
        (should (mambad-test--logged (format "<- #%d cancelled" long))))
      (should (= (1+ (plist-get before :cancelled)) (plist-get (mambad-test--requests) :cancelled)))
      (should (= (1+ shown) (plist-get mambad-stats :shown))))))

(ert-deftest mambad-complete-region-and-completion-at-point ()
  (mambad-test--with-buffer ()
    (mambad-mode -1)
    (insert "import Foundation")
    (let ((expected (mambad-test--reference "import Foundation" 12 t)))
      (mambad-complete-region (point-min) (point-max))
      (mambad-test--wait "the region's completion" (lambda () (> (buffer-size) (length "import Foundation"))))
      (should (equal (concat "import Foundation" expected) (buffer-string))))
    (erase-buffer)
    (insert "def fibon")
    (let* ((continuation (car (split-string (mambad-test--reference "def fibon") "\n")))
           (completion-at-point-functions '(mambad-completion-at-point)))
      (completion-at-point)
      (should (equal (concat "def fibon" continuation) (buffer-string))))))

(ert-deftest mambad-status-shows-the-daemon ()
  (let* ((mambad-socket mambad-test-socket)
         (text (mambad-status)))
    (should (string-match-p "\\`mambad: ready, model tiny-falcon-vocab-nf4, socket " text))
    (should (string-match-p (regexp-quote mambad-test-socket) text))
    (should (string-match-p "[0-9]+ completed" text))))

(defun mambad-test--start-daemon (path)
  "A daemon of the test's own on PATH, once it answers."
  (let* ((process-environment (cons "MAMBAD_THREADS=1" process-environment))
         (daemon (make-process :name "mambad-daemon" :noquery t :buffer nil :stderr (get-buffer-create " *mambad-daemon*")
                               :command (list (or (getenv "MAMBAD_BIN") (error "MAMBAD_BIN is not set")) "serve"
                                              "--model" (or (getenv "MAMBAD_MODEL") (error "MAMBAD_MODEL is not set"))
                                              "--socket" path "--precision" "exact"))))
    (mambad-test--wait "the daemon" (lambda () (ignore-errors (equal "ready" (plist-get (mambad-test--call "status" nil path) :state)))))
    daemon))

(defun mambad-test--stop-daemon (daemon)
  (interrupt-process daemon) ; SIGINT drains like SIGTERM
  (mambad-test--wait "the daemon to exit" (lambda () (not (process-live-p daemon))))
  (should (= 0 (process-exit-status daemon))))

(ert-deftest mambad-reconnects-after-the-daemon-restarts ()
  (let* ((path (concat (make-temp-name (expand-file-name "mambad-el-" temporary-file-directory)) ".sock"))
         (daemon (mambad-test--start-daemon path)))
    (mambad-test--with-buffer ((mambad-socket path))
      (when (process-live-p mambad--process) (delete-process mambad--process))
      (let ((connects mambad-connects)
            (expected nil))
        (mambad-test--type "foo")
        (setq expected (plist-get (mambad-test--suggestion) :text))
        (mambad-test--stop-daemon daemon)
        (let ((errors (plist-get mambad-stats :errors)))
          (mambad-test--type "!")
          (mambad-test--wait "the failure noticed" (lambda () (> (plist-get mambad-stats :errors) errors)))
          (should (equal (format "cannot connect to %s: No such file or directory" path) mambad--reported))
          (should-not (mambad-suggestion)))
        (setq daemon (mambad-test--start-daemon path))
        (mambad-test--type (kbd "DEL"))
        (should (equal expected (plist-get (mambad-test--suggestion) :text)))
        (should (= (+ 2 connects) mambad-connects))
        (mambad-test--stop-daemon daemon)))))

(ert-deftest mambad-is-a-package-that-byte-compiles-cleanly ()
  (let* ((source (locate-library "mambad.el"))
         (dir (make-temp-file "mambad-el" t))
         (copy (expand-file-name "mambad.el" dir)))
    (unwind-protect
        (progn
          (copy-file source copy)
          (with-temp-buffer
            (insert-file-contents copy)
            (require 'package)
            (let ((info (package-buffer-info)))
              (should (eq (quote mambad) (package-desc-name info)))
              (should (equal '((emacs (27 1))) (package-desc-reqs info)))))
          (let ((byte-compile-error-on-warn t))
            (should (byte-compile-file copy))))
      (delete-directory dir t))))

;;; mambad-test.el ends here
