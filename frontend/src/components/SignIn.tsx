// The sign-in step, shown instead of the chat when the server wants a token (GET /api/me
// answered 401): one password-type field for the token, a button, the refusal, and where to get
// a token. The token itself is kept by lib/auth (sessionStorage, this tab only).

import { useEffect, useRef, useState } from 'react';

export interface SignInProps {
  /** Why the last token was refused, if it was. */
  error: string | null;
  /** A submitted token is being checked. */
  busy: boolean;
  onSubmit: (token: string) => void;
}

export function SignIn({ error, busy, onSubmit }: SignInProps) {
  const [token, setToken] = useState('');
  const input = useRef<HTMLInputElement>(null);

  // Focus the field on arrival and after a refusal, so the next try is one paste away.
  useEffect(() => {
    if (!busy) input.current?.focus();
  }, [error, busy]);

  return (
    <main className="signin">
      <form
        className="signin__card"
        aria-labelledby="signin-title"
        aria-busy={busy}
        onSubmit={(e) => {
          e.preventDefault();
          if (!busy) onSubmit(token);
        }}
      >
        <span className="logo" aria-hidden="true" />
        <h1 id="signin-title">Sign in</h1>
        <p className="signin__lead">This chat server needs an access token.</p>
        <label htmlFor="token-input" className="signin__label">
          Access token
        </label>
        <input
          id="token-input"
          ref={input}
          className="signin__input"
          data-testid="token-input"
          type="password"
          name="token"
          autoComplete="off"
          autoCapitalize="off"
          spellCheck={false}
          value={token}
          onChange={(e) => setToken(e.target.value)}
          aria-invalid={error ? true : undefined}
          aria-describedby={error ? 'signin-error signin-hint' : 'signin-hint'}
        />
        {error && (
          <p id="signin-error" className="signin__error" role="alert" data-testid="sign-in-error">
            {error}
          </p>
        )}
        <button type="submit" className="button button--send signin__submit" data-testid="sign-in-button" disabled={busy}>
          {busy ? 'Signing in…' : 'Sign in'}
        </button>
        <p id="signin-hint" className="signin__hint">
          Ask your administrator for a token. On a development server you can mint one with:{' '}
          <code>ws-gateway token --user &lt;name&gt;</code>
        </p>
      </form>
    </main>
  );
}
