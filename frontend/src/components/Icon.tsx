// A line icon on a 16×16 grid, drawn in the text's colour; decorative (the button it sits in has
// the accessible name).

export function Icon({ d, weight = 1.8 }: { d: string; weight?: number }) {
  return (
    <svg className="button__svg" viewBox="0 0 16 16" aria-hidden="true">
      <path d={d} fill="none" stroke="currentColor" strokeWidth={weight} strokeLinecap="round" strokeLinejoin="round" />
    </svg>
  );
}
