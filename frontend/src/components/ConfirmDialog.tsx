// A modal question with two answers (e.g. "Delete this conversation?"): focus starts on the
// safe answer, Tab stays inside, Escape or a click outside is "no", and focus goes back to
// where it was when the dialog closes.

import { useEffect, useId, useRef, type KeyboardEvent, type ReactNode } from 'react';

export interface ConfirmDialogProps {
  title: string;
  children: ReactNode;
  confirmLabel: string;
  /** The confirm button's text while the action runs. */
  busyLabel?: string;
  /** The action is running (the buttons wait). */
  busy?: boolean;
  /** Why the last try failed, if it did. */
  error?: string | null;
  onConfirm: () => void;
  onCancel: () => void;
}

export function ConfirmDialog(props: ConfirmDialogProps) {
  const { title, children, confirmLabel, busyLabel, busy = false, error, onConfirm, onCancel } = props;
  const titleId = useId();
  const bodyId = useId();
  const cancel = useRef<HTMLButtonElement>(null);
  const confirm = useRef<HTMLButtonElement>(null);

  useEffect(() => {
    const before = document.activeElement instanceof HTMLElement ? document.activeElement : null;
    cancel.current?.focus();
    return () => {
      if (before?.isConnected) before.focus();
    };
  }, []);

  const onKeyDown = (e: KeyboardEvent) => {
    if (e.key === 'Escape') {
      // Handled here: nothing behind the dialog (the drawer) reacts to this Escape too.
      e.preventDefault();
      e.nativeEvent.stopImmediatePropagation();
      if (!busy) onCancel();
    } else if (e.key === 'Tab') {
      // Two buttons: Tab and Shift+Tab go from one to the other.
      e.preventDefault();
      (document.activeElement === cancel.current ? confirm : cancel).current?.focus();
    }
  };

  return (
    <div className="dialog-backdrop" onMouseDown={(e) => e.target === e.currentTarget && !busy && onCancel()}>
      <div
        className="dialog"
        role="alertdialog"
        aria-modal="true"
        aria-labelledby={titleId}
        aria-describedby={bodyId}
        data-testid="confirm-dialog"
        onKeyDown={onKeyDown}
      >
        <h2 id={titleId} className="dialog__title">
          {title}
        </h2>
        <div id={bodyId} className="dialog__body">
          {children}
          {error && (
            <p className="dialog__error" role="alert">
              {error}
            </p>
          )}
        </div>
        <div className="dialog__actions">
          {/* aria-disabled, not disabled, while busy: a disabled button would drop the focus. */}
          <button
            ref={cancel}
            type="button"
            className="button button--ghost"
            data-testid="confirm-cancel"
            onClick={() => !busy && onCancel()}
            aria-disabled={busy}
          >
            Cancel
          </button>
          <button
            ref={confirm}
            type="button"
            className="button button--danger"
            data-testid="confirm-accept"
            onClick={() => !busy && onConfirm()}
            aria-disabled={busy}
          >
            {busy ? (busyLabel ?? confirmLabel) : confirmLabel}
          </button>
        </div>
      </div>
    </div>
  );
}
