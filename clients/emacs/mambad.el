;;; mambad.el --- Inline completions from the mambad language-model daemon  -*- lexical-binding: t -*-

;; Copyright (C) 2026 The mambad authors
;; Version: 0.1.0
;; Package-Requires: ((emacs "27.1"))
;; Keywords: convenience, completion, tools
;; URL: https://github.com/mambad/mambad

;; This file is not part of GNU Emacs.

;;; Commentary:

;; `mambad-mode' shows completions from a running mambad daemon (JSON-RPC 2.0 on a
;; Unix socket) as ghost text after point, once typing pauses for `mambad-debounce'
;; seconds.  Each buffer is a `session', so a newer request supersedes an older one;
;; typing sends `$/cancelRequest' for a request still running.  While a suggestion is
;; shown, `mambad-suggestion-map' is active:
;;
;;   TAB  `mambad-accept'        M-f  `mambad-accept-word'
;;   M-e  `mambad-accept-line'   C-g  `mambad-dismiss'
;;
;; Also: `mambad-complete-region', `mambad-completion-at-point' (for
;; `completion-at-point-functions') and `mambad-status'.  See README.md.

;;; Code:

(require 'json)
(require 'cl-lib)
(require 'seq)
(require 'subr-x)

(defgroup mambad nil
  "Completions from the mambad daemon."
  :group 'completion
  :prefix "mambad-")

(defcustom mambad-socket nil
  "The daemon's socket.  Nil: $MAMBAD_SOCKET, else the first that exists of
$XDG_RUNTIME_DIR/mambad.sock, /tmp/mambad.sock, /run/mambad/mambad.sock."
  :type '(choice (const :tag "Default" nil) file))

(defcustom mambad-debounce 0.15
  "Seconds without typing before a suggestion is requested."
  :type 'number)

(defcustom mambad-max-tokens 48
  "At most this many new tokens per suggestion."
  :type 'integer)

(defcustom mambad-temperature 0
  "Sampling temperature; 0 is greedy (deterministic)."
  :type 'number)

(defcustom mambad-single-line t
  "Non-nil: suggestions end at the first newline after some text."
  :type 'boolean)

(defcustom mambad-stop nil
  "Extra stop strings."
  :type '(repeat string))

(defcustom mambad-context-chars 6000
  "The prompt is at most this many characters before point."
  :type 'integer)

(defcustom mambad-stream t
  "Non-nil: show the suggestion while it is generated."
  :type 'boolean)

(defcustom mambad-sync-timeout 10
  "Seconds `mambad-completion-at-point' waits for the daemon."
  :type 'number)

(defface mambad-suggestion-face '((t :inherit shadow))
  "Face of the ghost text.")

;;;; Connection

(defvar mambad--process nil "The connection to the daemon, or nil.")
(defvar mambad--partial "" "Bytes after the last complete line received.")
(defvar mambad--next-id 1)
(defvar mambad--pending (make-hash-table) "Request id -> (ON-REPLY . ON-PROGRESS).")
(defvar mambad--path nil "The socket of the current or last connection.")
(defvar mambad-connects 0 "Connections made so far.")
(defvar mambad-stats (list :requests 0 :cancels 0 :cancelled-replies 0 :stale-replies 0 :shown 0 :errors 0)
  "Counters, for `mambad-status' and tests.")
(defvar mambad-log nil "Recent events, newest first.")
(defvar mambad--reported nil "The last error shown to the user.")

(defun mambad--count (key)
  (setq mambad-stats (plist-put mambad-stats key (1+ (plist-get mambad-stats key)))))

(defun mambad--trace (format-string &rest args)
  (push (apply #'format format-string args) mambad-log)
  (when (> (length mambad-log) 200) (setcdr (nthcdr 199 mambad-log) nil)))

(defun mambad-socket-path ()
  "The socket to connect to (see `mambad-socket')."
  (or (and mambad-socket (not (string-empty-p mambad-socket)) mambad-socket)
      (let ((env (getenv "MAMBAD_SOCKET"))) (and env (not (string-empty-p env)) env))
      (let* ((runtime (getenv "XDG_RUNTIME_DIR"))
             (candidates (append (and runtime (not (string-empty-p runtime))
                                      (list (expand-file-name "mambad.sock" runtime)))
                                 '("/tmp/mambad.sock" "/run/mambad/mambad.sock"))))
        (or (seq-find #'file-exists-p candidates) (car candidates)))))

(defun mambad--native-json-p ()
  (and (fboundp 'json-serialize) (or (not (fboundp 'json-available-p)) (json-available-p))))

(defun mambad--encode (object)
  "OBJECT (plists, vectors, :false, :null) as JSON text."
  (if (mambad--native-json-p)
      (json-serialize object)
    (let ((json-false :false) (json-null :null)) (json-encode object))))

(defun mambad--decode (text)
  "TEXT as plists with keyword keys and lists; null and false are nil."
  (if (mambad--native-json-p)
      (json-parse-string text :object-type 'plist :array-type 'list :null-object nil :false-object nil)
    (let ((json-object-type 'plist) (json-array-type 'list) (json-key-type 'keyword)
          (json-false nil) (json-null nil))
      (json-read-from-string text))))

(defun mambad--fail-all (message)
  (let ((pending mambad--pending))
    (setq mambad--pending (make-hash-table))
    (maphash (lambda (id handlers)
               (funcall (car handlers) (list :code -1 :message message :transport t) nil id))
             pending)))

(defun mambad--sentinel (process event)
  (when (and (eq process mambad--process) (not (process-live-p process)))
    (setq mambad--process nil)
    (let ((message (format "connection to %s closed: %s" mambad--path (string-trim event))))
      (mambad--trace "%s" message)
      (mambad--fail-all message))))

(defun mambad--dispatch (message)
  (let ((method (plist-get message :method))
        (id (plist-get message :id)))
    (cond
     ((equal method "complete/progress")
      (let* ((params (plist-get message :params))
             (handlers (gethash (plist-get params :id) mambad--pending)))
        (when (cdr handlers) (funcall (cdr handlers) params))))
     (id
      (let ((handlers (gethash id mambad--pending)))
        (remhash id mambad--pending)
        (when handlers
          (funcall (car handlers) (plist-get message :error) (plist-get message :result) id)))))))

(defun mambad--filter (_process output)
  (let ((lines (split-string (concat mambad--partial output) "\n")))
    (setq mambad--partial (car (last lines)))
    (dolist (line (butlast lines))
      (condition-case err
          (mambad--dispatch (mambad--decode line))
        (error (mambad--trace "bad message %S: %S" (substring line 0 (min 200 (length line))) err))))))

(defun mambad--connection ()
  "The live connection, made if needed; signals `file-error' when it cannot be."
  (unless (process-live-p mambad--process)
    (setq mambad--path (mambad-socket-path)
          mambad--partial "")
    (setq mambad--process
          (make-network-process :name "mambad" :family 'local :service mambad--path
                                :coding 'utf-8-unix :noquery t
                                :filter #'mambad--filter :sentinel #'mambad--sentinel))
    (setq mambad-connects (1+ mambad-connects))
    (mambad--trace "connected to %s" mambad--path))
  mambad--process)

(defun mambad--send (message)
  (process-send-string (mambad--connection) (concat (mambad--encode message) "\n")))

(defun mambad-request (method params on-reply &optional on-progress)
  "Send METHOD with PARAMS (a plist or nil); return the request id.
ON-REPLY is called once with (ERROR RESULT ID): ERROR is the JSON-RPC
error as a plist, or (:code -1 :transport t :message ...) when the
daemon cannot be reached.  ON-PROGRESS is called with the params of
each complete/progress notification."
  (let ((id mambad--next-id))
    (setq mambad--next-id (1+ id))
    (puthash id (cons on-reply on-progress) mambad--pending)
    (mambad--trace "-> %s #%d" method id)
    (condition-case err
        (mambad--send (append (list :jsonrpc "2.0" :id id :method method) (and params (list :params params))))
      (error
       (remhash id mambad--pending)
       (let ((message (format "cannot connect to %s: %s" mambad--path
                              (or (and (stringp (nth 2 err)) (nth 2 err)) ; file-error: (SYMBOL WHAT REASON ...)
                                  (error-message-string err)))))
         (mambad--trace "%s" message)
         (funcall on-reply (list :code -1 :message message :transport t) nil id))))
    id))

(defun mambad-cancel (id)
  "Ask the daemon to stop request ID; it still answers (-32800)."
  (when (and (gethash id mambad--pending) (process-live-p mambad--process))
    (mambad--trace "-> $/cancelRequest #%d" id)
    (mambad--send (list :jsonrpc "2.0" :method "$/cancelRequest" :params (list :id id)))))

(defun mambad-request-sync (method params &optional timeout)
  "Send METHOD with PARAMS and wait (at most TIMEOUT seconds) for the result.
Signals an error with the daemon's message when the request fails."
  (let* ((done nil) (error-object nil) (result nil)
         (id (mambad-request method params
                             (lambda (err res _id) (setq done t error-object err result res))))
         (deadline (+ (float-time) (or timeout mambad-sync-timeout))))
    (while (and (not done) (< (float-time) deadline))
      (accept-process-output mambad--process 0.05))
    (unless done
      (mambad-cancel id)
      (error "mambad: no reply to %s in time" method))
    (when error-object
      (error "mambad: %s" (plist-get error-object :message)))
    result))

(defun mambad--report (err)
  (mambad--count :errors)
  (let ((message (if (plist-get err :transport) (plist-get err :message)
                   (format "daemon error %s: %s" (plist-get err :code) (plist-get err :message)))))
    (mambad--trace "error: %s" message)
    (unless (equal message mambad--reported)
      (setq mambad--reported message)
      (message "mambad: %s" message))))

;;;; Suggestions

(defvar mambad-mode)

(defvar-local mambad--inflight nil "The request in flight: (:id :at :text).")
(defvar-local mambad--suggestion nil "The suggestion shown: (:text :at :done).")
(defvar-local mambad--overlay nil)
(defvar-local mambad--timer nil)
(defvar-local mambad--seen nil "Position after the last command.")
(defvar-local mambad--expect nil "Position after our own partial accept.")
(defvar-local mambad--suggestion-visible nil "Non-nil while `mambad-suggestion-map' is active.")

(defvar mambad-suggestion-map
  (let ((map (make-sparse-keymap)))
    (define-key map (kbd "TAB") #'mambad-accept)
    (define-key map (kbd "<tab>") #'mambad-accept)
    (define-key map (kbd "M-f") #'mambad-accept-word)
    (define-key map (kbd "M-e") #'mambad-accept-line)
    (define-key map (kbd "C-g") #'mambad-dismiss)
    map)
  "Keys active while a suggestion is shown.")

(defvar mambad--emulation-alist `((mambad--suggestion-visible . ,mambad-suggestion-map)))
(add-to-list 'emulation-mode-map-alists 'mambad--emulation-alist)

(defun mambad--position ()
  "What the buffer holds and where point is."
  (cons (buffer-chars-modified-tick) (point)))

(defun mambad--clear ()
  (when mambad--overlay (delete-overlay mambad--overlay))
  (setq mambad--overlay nil mambad--suggestion nil mambad--suggestion-visible nil))

(defun mambad--cancel-inflight ()
  (when mambad--inflight
    (mambad--count :cancels)
    (mambad-cancel (plist-get mambad--inflight :id))
    (setq mambad--inflight nil)))

(defun mambad--show (at text done)
  "Show TEXT as ghost text at AT (a position).
DONE is non-nil when TEXT is the whole completion."
  (mambad--clear)
  (unless (string-empty-p text)
    (let ((ghost (propertize text 'face 'mambad-suggestion-face)))
      (put-text-property 0 1 'cursor t ghost) ; the cursor stays before the ghost text
      (setq mambad--overlay (make-overlay (cdr at) (cdr at) nil nil t))
      (overlay-put mambad--overlay 'after-string ghost)
      (overlay-put mambad--overlay 'mambad t)
      (overlay-put mambad--overlay 'priority 100))
    (setq mambad--suggestion (list :text text :at at :done done)
          mambad--suggestion-visible t)
    (when done (mambad--count :shown))))

(defun mambad-suggestion ()
  "The suggestion shown at point, as (:text :at :done), or nil."
  (and mambad--suggestion (equal (plist-get mambad--suggestion :at) (mambad--position)) mambad--suggestion))

(defun mambad--prompt ()
  (buffer-substring-no-properties (max (point-min) (- (point) mambad-context-chars)) (point)))

(defun mambad--params (prompt &optional single-line stream)
  (append (list :prompt prompt :maxTokens mambad-max-tokens :temperature mambad-temperature
                :singleLine (if single-line t :false) :stream (if stream t :false))
          (and mambad-stop (list :stop (vconcat mambad-stop)))))

(defun mambad-request-suggestion ()
  "Ask for a suggestion at point now (the debounce timer calls this)."
  (interactive)
  (mambad--cancel-inflight)
  (let* ((buffer (current-buffer))
         (at (mambad--position))
         (request (list :at at :text ""))
         (params (append (mambad--params (mambad--prompt) mambad-single-line mambad-stream)
                         (list :session (format "emacs:%d:%s" (emacs-pid) (or buffer-file-name (buffer-name)))))))
    (mambad--count :requests)
    (cl-flet ((current () (and (buffer-live-p buffer)
                               (with-current-buffer buffer
                                 (and (eq mambad--inflight request) (equal (mambad--position) at))))))
      (plist-put request :id
                 (mambad-request
                  "complete" params
                  (lambda (err result id)
                    (let ((mine (current)))
                      (when (buffer-live-p buffer)
                        (with-current-buffer buffer
                          (when (eq mambad--inflight request) (setq mambad--inflight nil))
                          (cond
                           ((and err (eql (plist-get err :code) -32800))
                            (mambad--count :cancelled-replies)
                            (mambad--trace "<- #%d cancelled" id))
                           (err (mambad--report err))
                           (mine
                            (setq mambad--reported nil)
                            (mambad--trace "<- #%d %S" id (plist-get result :text))
                            (mambad--show at (plist-get result :text) t))
                           (t (mambad--count :stale-replies)
                              (mambad--trace "<- #%d stale, ignored" id)))))))
                  (lambda (progress)
                    (when (current)
                      (with-current-buffer buffer
                        (plist-put request :text (concat (plist-get request :text) (plist-get progress :text)))
                        (mambad--show at (plist-get request :text) nil)))))))
    (setq mambad--inflight request)))

(defun mambad--debounce ()
  (when (timerp mambad--timer) (cancel-timer mambad--timer))
  (let ((buffer (current-buffer)))
    (setq mambad--timer
          (run-with-timer mambad-debounce nil
                          (lambda ()
                            (when (and (buffer-live-p buffer) (eq buffer (window-buffer (selected-window))))
                              (with-current-buffer buffer
                                (when mambad-mode (mambad-request-suggestion)))))))))

(defun mambad--post-command ()
  "Drop what was shown or asked for when text or point changed.
An edit asks again, after `mambad-debounce' seconds."
  (let ((at (mambad--position))
        (seen mambad--seen))
    (unless (equal at seen)
      (setq mambad--seen at)
      (if (and (equal at mambad--expect) mambad--suggestion)
          (setq mambad--expect nil) ; our own partial accept: the rest stays
        (setq mambad--expect nil)
        (mambad--cancel-inflight)
        (mambad--clear)
        (if (and (not (eql (car at) (car seen))) (not buffer-read-only) (not (minibufferp)))
            (mambad--debounce)
          (when (timerp mambad--timer) (cancel-timer mambad--timer)))))))

(defun mambad--part (text kind)
  "The part of TEXT an accept of KIND (all, word, line) inserts."
  (pcase kind
    ('word (if (string-match "\\`[ \t\n]*\\(?:\\(?:\\sw\\|\\s_\\)+\\|[^ \t\n]\\)" text) (match-string 0 text) text))
    ('line (let ((nl (string-match "\n" text (if (string-prefix-p "\n" text) 1 0))))
             (if nl (substring text 0 nl) text)))
    (_ text)))

(defun mambad--accept (kind)
  (let ((s (mambad-suggestion)))
    (if (not s)
        (message "mambad: no suggestion")
      (let* ((text (plist-get s :text))
             (part (mambad--part text kind))
             (rest (substring text (length part))))
        (mambad--clear)
        (insert part)
        (setq mambad--expect (mambad--position))
        (unless (string-empty-p rest)
          (mambad--show mambad--expect rest (plist-get s :done)))))))

(defun mambad-accept ()
  "Insert the whole suggestion."
  (interactive)
  (mambad--accept 'all))

(defun mambad-accept-word ()
  "Insert the suggestion's next word; the rest stays shown."
  (interactive)
  (mambad--accept 'word))

(defun mambad-accept-line ()
  "Insert the suggestion up to the end of its line; the rest stays shown."
  (interactive)
  (mambad--accept 'line))

(defun mambad-dismiss ()
  "Drop the suggestion and any request in flight."
  (interactive)
  (when (timerp mambad--timer) (cancel-timer mambad--timer))
  (mambad--cancel-inflight)
  (mambad--clear))

;;;###autoload
(define-minor-mode mambad-mode
  "Inline completions from the mambad daemon, as ghost text after point."
  :lighter " Mamba"
  (if mambad-mode
      (add-hook 'post-command-hook #'mambad--post-command nil t)
    (remove-hook 'post-command-hook #'mambad--post-command t)
    (mambad-dismiss)))

;;;###autoload
(define-globalized-minor-mode global-mambad-mode mambad-mode
  (lambda () (when (and (not (minibufferp)) (derived-mode-p 'prog-mode 'text-mode)) (mambad-mode 1))))

;;;; Commands

;;;###autoload
(defun mambad-complete-region (start end)
  "Continue the text from START to END (the region); insert the completion at END."
  (interactive "r")
  (let ((marker (copy-marker end t))
        (buffer (current-buffer)))
    (mambad-request "complete" (mambad--params (buffer-substring-no-properties start end) nil nil)
                    (lambda (err result _id)
                      (if err
                          (mambad--report err)
                        (when (buffer-live-p buffer)
                          (with-current-buffer buffer
                            (save-excursion (goto-char marker) (insert (plist-get result :text))))))
                      (set-marker marker nil)))))

;;;###autoload
(defun mambad-completion-at-point ()
  "Complete the symbol at point to the end of the line with the daemon.
For `completion-at-point-functions'; the daemon is asked when the
candidates are first needed."
  (let* ((end (point))
         (bounds (bounds-of-thing-at-point 'symbol))
         (start (if (and bounds (= (cdr bounds) end)) (car bounds) end))
         (prompt (mambad--prompt))
         (candidates 'unknown))
    (list start end
          (lambda (string predicate action)
            (when (eq candidates 'unknown)
              (setq candidates
                    (condition-case err
                        (let ((text (plist-get (mambad-request-sync "complete" (mambad--params prompt t nil)) :text)))
                          (and (not (string-empty-p (string-trim text)))
                               (list (concat (buffer-substring-no-properties start end)
                                             (car (split-string text "\n"))))))
                      (error (message "%s" (error-message-string err)) nil))))
            (complete-with-action action candidates string predicate))
          :exclusive 'no)))

;;;###autoload
(defun mambad-status ()
  "Show the daemon's state and counters."
  (interactive)
  (let* ((status (mambad-request-sync "status" nil 5))
         (requests (plist-get status :requests))
         (cache (plist-get status :cache))
         (text (format "mambad: %s, model %s, socket %s; requests %d active, %d queued, %d completed, %d cancelled; cache %d hits, %d misses; this Emacs: %d requests, %d cancelled, %d shown"
                       (plist-get status :state) (plist-get (plist-get status :model) :name) mambad--path
                       (plist-get requests :active) (plist-get requests :queued) (plist-get requests :completed)
                       (plist-get requests :cancelled) (plist-get cache :hits) (plist-get cache :misses)
                       (plist-get mambad-stats :requests) (plist-get mambad-stats :cancels)
                       (plist-get mambad-stats :shown))))
    (message "%s" text)
    text))

(provide 'mambad)

;;; mambad.el ends here
